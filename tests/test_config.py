"""The frozen config: layering, parsing, and typos rejected before any work."""
import dataclasses

import pytest

from mnistbench.config import parse_sets, resolve
from mnistbench.errors import UserError
from mnistbench.models import get_spec


def test_recipe_then_overrides():
    cfg = resolve({"model": "cnn", "epochs": "7", "width": "24", "quiet": True})
    assert cfg.epochs == 7 and cfg.model_args == {"width": 24, "dropout": 0.0} and cfg.quiet is True
    assert cfg.lr == get_spec("cnn").recipes["default"]["lr"] != 3e-3  # recipe over global default
    assert resolve({"recipe": "long"}).epochs > resolve({}).epochs
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3


@pytest.mark.parametrize("overrides, needle", [
    ({"epoch": "3"}, "did you mean 'epochs'"),
    ({"learning_rate": "1"}, "unknown config key 'learning_rate'"),
    ({"epochs": "three"}, "expected a number"),
    ({"batch_size": "1.5"}, "expected a whole number"),
    ({"epochs": "0"}, "must be > 0"),
    ({"optimizer": "adam"}, "choose one of adamw, sgd"),
    ({"model": "resnet"}, "registered models"),
    ({"recipe": "fast"}, "no recipe 'fast'"),
    ({"deterministic": "maybe"}, "expected true or false"),
    ({"beta1": "1"}, "betas must be in"),
    ({"beta2": "-0.1"}, "betas must be in"),
])
def test_bad_keys_and_values(overrides, needle):
    with pytest.raises(UserError, match=needle):
        resolve(overrides)


def test_parse_sets():
    assert parse_sets(["a=1", "b-c = x"]) == {"a": "1", "b_c": "x"}
    with pytest.raises(UserError, match="key=value"):
        parse_sets(["novalue"])


def test_every_field_has_one_of_the_sections_and_sources_name_each_layer():
    from mnistbench.config import FIELDS, by_section, resolve_traced
    from mnistbench.schema import SECTIONS

    assert {f.metadata["section"] for f in FIELDS.values()} == set(SECTIONS)
    cfg, sources = resolve_traced([("preset quick", {"budget_s": 60, "lr": 1.0}),
                                   ("flag", {"model": "cnn", "lr": "0.5", "width": "8"})])
    rows = by_section(cfg, sources)
    shown = [key for _, keys in rows for key, _, _ in keys]
    assert sorted(shown) == sorted([*FIELDS, *cfg.model_args, *cfg.task_args])  # each exactly once
    assert [title for title, _ in rows][:len(SECTIONS)] == list(SECTIONS)
    assert sources["lr"] == "flag" and cfg.lr == 0.5  # flag over preset over recipe
    assert sources["budget_s"] == "preset quick" and sources["width"] == "flag"
    assert sources["epochs"] == "recipe default" == sources["batch_size"]  # the CNN's recipe sets them
    assert sources["momentum"] == "default" and sources["dropout"] == "recipe default"
    assert resolve_traced([("flag", {"model": "cnn", "lr": "0.5"})])[0] == resolve({"model": "cnn", "lr": "0.5"})


def test_one_list_of_result_neutral_fields_for_resume_and_the_study(tmp_path):
    from mnistbench.config import FIELDS, RESULT_NEUTRAL, result_settings
    from mnistbench.run import RESUME_MAY_CHANGE
    from mnistbench.study.plan import decisive_settings

    base = resolve({"model": "cnn"}).to_dict()
    assert set(RESULT_NEUTRAL) <= set(FIELDS) and set(RESUME_MAY_CHANGE) <= set(FIELDS)
    for key in FIELDS:
        if key == "model_sha256":  # not a setting: resolve() derives it from the model file's code
            continue
        flat = {"model": "cnn"} if key == "model" else resolve({"model": "cnn"}).flat()
        changed = resolve({**flat, key: _other(key, base[key])}).to_dict()
        same_for_study = decisive_settings(changed) == decisive_settings(base)
        assert same_for_study == (key in RESULT_NEUTRAL), key
        same_for_resume = (result_settings(changed, also_ignoring=RESUME_MAY_CHANGE)
                           == result_settings(base, also_ignoring=RESUME_MAY_CHANGE))
        assert same_for_resume == (key in RESULT_NEUTRAL or key in RESUME_MAY_CHANGE), key
    assert "device" not in RESULT_NEUTRAL and "epochs" not in RESULT_NEUTRAL  # both change a result


def _other(key, value):
    """A valid value of `key` other than `value`."""
    from mnistbench.config import CHOICES

    if key in CHOICES:
        return next(c for c in CHOICES[key] if c != value)
    others = {"model": "vit", "recipe": "long", "dataset": "fashion-mnist", "data_dir": "/elsewhere",
              "out": "/elsewhere/run"}
    if key in others:
        return others[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return value / 2 if value else 0.5
    return value + 1
