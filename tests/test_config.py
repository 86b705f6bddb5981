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
