"""What the paired tests let the report claim, in words: a verdict between two points, the gain of a larger
budget, the Pareto front, and who reached 99 % validation accuracy first.

Every sentence is symmetric in its arguments: the winner of a verdict comes first whichever side it was; a
pair with no winner is named in one fixed order (smaller budget, then name). A p-value over several seeds is
written as a bound that holds ('p ≤ 0.024 in each of 2 seeds'). With fewer than SEED_TEST_MIN seeds the
sentences speak of "these runs"; from SEED_TEST_MIN seeds on they add the test across seeds.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from .formatting import budget_text, names, p_at_least, p_at_most, p_value, pct, secs
from .paired import budget_order
from .verdicts import SEED_TEST_MIN, find, front_axis


def point_name(model: str, budget: float | None, unit: str | None, kind: str = "") -> str:
    """A model at a budget as a sentence names it: the bare model in a same-budget pair."""
    return model if kind == "models" or budget is None else f"{model} @ {budget_text(budget, unit)}"


def relation(v: dict[str, Any], unit: str | None = None) -> str:
    """A verdict (verdicts.verdicts) as a sentence fragment naming both points; the same sentence whichever
    point is A."""
    a = point_name(v["model_a"], v["budget_a"], unit, v["kind"])
    b = point_name(v["model_b"], v["budget_b"], unit, v["kind"])
    n, runs = len(v["seeds"]), len(v["seeds"]) < SEED_TEST_MIN
    side = v["verdict"] if v["verdict"] in ("a", "b") else "a" if v["wins_a"] else "b" if v["wins_b"] else None
    if v["verdict"] != "mixed" and side:
        w, loser, wins = (a, b, v["wins_a"]) if side == "a" else (b, a, v["wins_b"])
        sig = _significant(v, side)
        if v["verdict"] == side:
            return (f"{w} is more accurate than {loser} in these runs ({sig})" if runs else
                    f"{w} is more accurate than {loser} in each of {n} seeds ({_each(v)}) and across seeds "
                    f"(paired t-test p {p_value(v['seed_test_p_holm'])})")
        if wins == n:  # every seed, but the test across seeds does not agree
            return (f"{w} is more accurate than {loser} in each of {n} seeds ({_each(v)}) but not across seeds "
                    f"(paired t-test p {p_value(v['seed_test_p_holm'])}): no claim about the architectures")
        return (f"{w} is more accurate than {loser} in {wins} of {n} seeds only ({sig}), with no significant "
                f"difference in the other{'s' * (n - wins > 1)}: no winner{_across(v)}")
    x, y = _ordered(v, a, b)
    if v["verdict"] == "mixed":
        wx, wy = (v["wins_a"], v["wins_b"]) if x == a else (v["wins_b"], v["wins_a"])
        neither = f", neither in {_seeds(v['ties'])}" if v["ties"] else ""
        worst = max(p for p, s in zip(v["p_holm"], v["better"]) if s)
        return (f"{x} is more accurate than {y} in {_seeds(wx)} and {y} than {x} in {_seeds(wy)}{neither}: mixed, "
                f"no winner (p {p_at_most(worst)} in each of those seeds){_across(v)}")
    where = f" in each of {n} seeds" if n > 1 else ""
    return (f"no significant difference between {x} and {y}{' in these runs' if runs else ''} on these "
            f"{v['n']:,} test images (p {p_at_least(min(v['p_holm']))}{where}){_across(v)}")


def _significant(v: dict[str, Any], side: str) -> str:
    """'p = 0.012' for one significant seed, 'p ≤ 0.024 in each of 2 seeds' (a bound) for several."""
    ps = [p for p, s in zip(v["p_holm"], v["better"]) if s == side]
    return f"p {p_value(ps[0])}" if len(ps) == 1 else f"p {p_at_most(max(ps))} in each of {len(ps)} seeds"


def _each(v: dict[str, Any]) -> str:
    """'McNemar p < 0.001 in each': the bound on the per-seed tests of a pair significant in every seed."""
    return f"McNemar p {p_at_most(max(v['p_holm']))} in each"


def _across(v: dict[str, Any]) -> str:
    p = v["seed_test_p_holm"]
    return "" if p is None else f"; across seeds, paired t-test p {p_value(p)}"


def _seeds(k: int) -> str:
    return f"{k} seed{'s' * (k != 1)}"


def _ordered(v: dict[str, Any], a: str, b: str) -> tuple[str, str]:
    """The two names in a fixed order, whichever is A: smaller budget first, then by name."""
    ka, kb = (budget_order(v["budget_a"]), a), (budget_order(v["budget_b"]), b)
    return (a, b) if ka <= kb else (b, a)


# --- what a larger budget buys ---------------------------------------------------------------------
def budget_gains(an: Any) -> list[str]:
    """With several budgets: each model's mean test accuracy at each budget, and whether each step up is a
    significant gain (the paired test of the model at consecutive budgets, same seeds and test images)."""
    if len(an.budgets) < 2:
        return []
    parts = []
    for model in an.models:
        pts = sorted((a["budget"], a["test_accuracy"]) for a in an.aggs
                     if a["model"] == model and a["budget"] is not None and a["test_accuracy"] is not None)
        steps = [f"{pct(pts[0][1])} ({budget_text(pts[0][0], an.budget_unit)})"] if pts else []
        for (b0, acc0), (b1, acc1) in itertools.pairwise(pts):
            v = next((v for v in an.verdicts if v["kind"] == "budgets" and v["model_a"] == model
                      and v["budget_a"] == b0 and v["budget_b"] == b1), None)
            steps.append(f"{pct(acc1)} ({budget_text(b1, an.budget_unit)}): {100 * (acc1 - acc0):+.2f} points, "
                         + (gain(v) if v else "not tested (no common test images)"))
        if len(steps) > 1:
            parts.append(f"{model} " + " → ".join(steps))
    return ["Accuracy against training budget (mean over seeds; each step up tested by McNemar on the same "
            "seeds and test images, Holm-corrected with the study's other tests): " + "; ".join(parts) + "."
            ] if parts else []


def gain(v: dict[str, Any]) -> str:
    """Whether a step up in budget (A: the smaller budget) changed accuracy significantly."""
    n = len(v["seeds"])
    if v["verdict"] == "mixed":
        return f"mixed: a significant gain in {_seeds(v['wins_b'])}, a loss in {_seeds(v['wins_a'])}{_across(v)}"
    for side, word in (("b", "gain"), ("a", "loss")):
        wins = v[f"wins_{side}"]
        if v["verdict"] == side:
            return f"a significant {word} ({_significant(v, side)}{_across(v)})"
        if wins:
            return (f"a significant {word} in {wins} of {n} seeds only ({_significant(v, side)}{_across(v)})"
                    if wins < n else f"a significant {word} in each seed but not across seeds{_across(v)}")
    return f"not significant (p {p_at_least(min(v['p_holm']))}{' in each seed' if n > 1 else ''}{_across(v)})"


# --- the Pareto front ------------------------------------------------------------------------------
def pareto(an: Any) -> list[str]:
    """The Pareto front of accuracy against budget (several budgets) or training time (a study trained for
    epochs), and every point off it named with the points that dominate it; nothing with one budget."""
    axis = front_axis(an.budgets)
    pts = {a["label"]: a for a in an.aggs if a["label"] in an.dominated}
    if axis is None or len(pts) < 2:
        return []
    cost = "budget" if axis == "budget" else "train_seconds"
    front = sorted((pts[m] for m in an.front), key=lambda a: (a[cost], -a["test_accuracy"]))
    what = ("training budget (a point is off it when another at no more budget is significantly more accurate)"
            if axis == "budget" else "training time (equal epochs; a model is off it when another trained in no "
            "more time and is significantly more accurate)")
    shown = [f"{a['label']} ({pct(a['test_accuracy'])})" if axis == "budget" else
             f"{a['label']} ({secs(a['train_seconds'])} s, {pct(a['test_accuracy'])})" for a in front]
    text = f"On the Pareto front of accuracy against {what}: {names(shown)}"
    off = [(m, by) for m, by in an.dominated.items() if by]
    if off:
        text += ". Off the front: " + "; ".join(f"{m} (dominated by {names(by)})" for m, by in off)
    return [text + "."]


# --- time to 99 % ------------------------------------------------------------------------------------
def time_to_99(an: Any, done: Sequence[dict[str, Any]], at: str) -> str:
    """Who reached 99 % validation accuracy, in what order. A time is known only to within the spacing of the
    validations, so models whose first 99 % validations lie within one spacing of each other are not ranked."""
    full = sorted((a for a in done if a["time_to_99"] is not None and a["time_to_99_n"] == a["ok"]),
                  key=lambda a: a["time_to_99"])
    some = [a for a in done if a["time_to_99"] is not None and a["time_to_99_n"] < a["ok"]]
    if not full and not some:
        return _start(at, f"no model reached 99 % validation accuracy; the highest test accuracy is "
                          f"{pct(done[0]['test_accuracy'])} ({done[0]['model']}).")
    spacing = {a["label"]: an.val_spacing.get(a["label"], 0.0) for a in [*full, *some]}
    tiers: list[list[dict[str, Any]]] = []
    for a in full:
        lead = tiers[-1][0] if tiers else None
        if lead and a["time_to_99"] - lead["time_to_99"] < max(spacing[a["label"]], spacing[lead["label"]]):
            tiers[-1].append(a)
        else:
            tiers.append([a])
    text = _start(at, _tiers(tiers) if tiers else "no model reached 99 % validation accuracy in every seed")
    if some:
        text += "; in only some seeds: " + ", ".join(f"{a['model']} ({a['time_to_99_n']} of {a['ok']}, "
                                                       f"{secs(a['time_to_99'])} s)" for a in some)
    never = [a["model"] for a in done if a["time_to_99"] is None]
    if never:
        text += f"; {names(never)} never reached it"
    gaps = sorted(spacing.values())
    every = secs(gaps[-1]) if secs(gaps[0]) == secs(gaps[-1]) else f"{secs(gaps[0])}–{secs(gaps[-1])}"
    several = any(a["ok"] > 1 for a in [*full, *some])
    mean = ", mean over the seeds that reached it" if several else ""
    return (text + f" (training time at the first validation at or above 99 %{mean}; validations every {every} s "
            "of training at most, so each time is known to within one spacing).")


def _tiers(tiers: list[list[dict[str, Any]]]) -> str:
    """'**cnn** reached 99 % validation accuracy first, after 12.0 s; then vit and alexnet (30.1 and 31.0 s,
    within one spacing: not ranked)' from groups of models whose times lie within one spacing."""
    def times(tier):
        return " and ".join(secs(a["time_to_99"]) for a in tier) + " s"
    head = tiers[0]
    if len(head) == 1:
        text = f"**{head[0]['model']}** reached 99 % validation accuracy first, after {times(head)} of training"
    else:
        bold = [f"**{a['model']}**" for a in head]
        text = (f"{names(bold)} reached 99 % validation accuracy within one validation spacing of each other "
                f"({times(head)}): "
                "too close to rank")
    for tier in tiers[1:]:
        text += f"; then {names([a['model'] for a in tier])} ({times(tier)}" + (
            ", within one spacing: not ranked)" if len(tier) > 1 else ")")
    return text


def _start(at: str, text: str) -> str:
    return at + text if at else text[:1].upper() + text[1:]


def versus(an: Any, budget: float | None, x: str, y: str) -> str | None:
    """The verdict sentence of models x and y at `budget`, or None when they were not compared."""
    v = find(an.verdicts, budget, x, y)
    return relation(v, an.budget_unit) if v else None
