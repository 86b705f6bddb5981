"""Verdicts over seeds, and the Pareto front that rests on them.

A verdict gathers the per-seed McNemar tests of one pair of points (a model at a budget): in how many seeds
each side is significantly more accurate and in how many neither, and with SEED_TEST_MIN seeds or more a test
across seeds on the per-seed accuracy differences. The verdict is "a" or "b" only when that side is more
accurate in every seed (and, with enough seeds, across seeds too), "mixed" when each side wins somewhere (a
reversal is never read as a win), and "none" otherwise.

Why both tests: McNemar holds the trained weights fixed, so it covers the sampling of test images and says
nothing about another training run; the across-seed test covers training randomness on these test images.
A claim about the architectures needs both. The across-seed test is the paired t-test: the exact sign-flip
test cannot give a two-sided p below 2 / 2^n (0.25 with 3 seeds, 0.0625 with 5), so below 6 seeds it could
never reject; the t-test can, when the seeds agree closely, at the price of assuming roughly normal per-seed
differences. Its p-values are Holm-corrected over the study's across-seed tests, a family of their own (they
test a different hypothesis: the architectures' mean accuracy over seeds, not these networks).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..metrics import holm, t_test_paired
from .paired import ALPHA

SEED_TEST_MIN = 3  # seeds per pair from which the across-seed test runs (with 2, its t has 1 degree of freedom)
Point = tuple[str, "float | None"]  # (model, budget)


def verdicts(tests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One verdict per pair of points (kind, model_a, budget_a, model_b, budget_b as in the tests, budget the
    shared one of a "models" pair), over its seeds: n (test images), seeds, p and p_holm (per seed, in seed
    order), better (per seed: "a", "b" or None), differences (accuracy_a - accuracy_b per seed), wins_a, wins_b,
    ties (seeds where neither is significantly more accurate), seed_test_p and seed_test_p_holm (the paired
    t-test across seeds, None with fewer than SEED_TEST_MIN seeds) and verdict ("a", "b", "mixed" or "none")."""
    out: dict[tuple, dict[str, Any]] = {}
    for t in tests:
        key = (t["kind"], t["model_a"], t["budget_a"], t["model_b"], t["budget_b"])
        v = out.setdefault(key, {k: t[k] for k in ("kind", "model_a", "budget_a", "model_b", "budget_b", "budget",
                                                   "n")} | {"seeds": [], "p": [], "p_holm": [], "better": [],
                                                            "differences": []})
        v["seeds"].append(t["seed"])
        v["p"].append(t["p"])
        v["p_holm"].append(t["p_holm"])
        v["better"].append(t["better"])
        v["differences"].append(t["accuracy_a"] - t["accuracy_b"])
    found = list(out.values())
    for v in found:
        v["wins_a"], v["wins_b"] = v["better"].count("a"), v["better"].count("b")
        v["ties"] = len(v["seeds"]) - v["wins_a"] - v["wins_b"]
        v["seed_test_p"] = t_test_paired(v["differences"]) if len(v["seeds"]) >= SEED_TEST_MIN else None
    across = [v for v in found if v["seed_test_p"] is not None]
    adjusted = dict(zip(map(id, across), holm([v["seed_test_p"] for v in across])))
    for v in found:
        v["seed_test_p_holm"] = adjusted.get(id(v))
        v["verdict"] = _verdict(v)
    return found


def _verdict(v: dict[str, Any]) -> str:
    if v["wins_a"] and v["wins_b"]:
        return "mixed"
    across = v["seed_test_p_holm"]
    for side in ("a", "b"):
        if v[f"wins_{side}"] == len(v["seeds"]) and (across is None or across < ALPHA):
            return side
    return "none"


def find(verdicts_: Sequence[dict[str, Any]], budget: float | None, x: str, y: str) -> dict[str, Any] | None:
    """The verdict of models x and y (either order) at `budget`, or None if they were not compared."""
    return next((v for v in verdicts_ if v["kind"] == "models" and v["budget"] == budget
                 and {v["model_a"], v["model_b"]} == {x, y}), None)


def between(verdicts_: Sequence[dict[str, Any]], p: Point, q: Point) -> dict[str, Any] | None:
    """The verdict of two points (model, budget), of any kind and in either order, or None."""
    return next((v for v in verdicts_ if {(v["model_a"], v["budget_a"]), (v["model_b"], v["budget_b"])} == {p, q}),
                None)


def winner(v: dict[str, Any]) -> Point | None:
    """The point a verdict says is more accurate, or None."""
    side = v["verdict"]
    return (v[f"model_{side}"], v[f"budget_{side}"]) if side in ("a", "b") else None


def front_axis(budgets: Sequence[float]) -> str | None:
    """What the Pareto front trades accuracy against: "budget" with several budgets, "seconds" (training time,
    which differs by design) in a study trained for epochs, None with one budget: every model had the same
    budget, and ranking by the realized seconds would rank the budget's tolerance."""
    return "budget" if len(budgets) > 1 else "seconds" if not budgets else None


def dominated(aggs: Sequence[dict[str, Any]], verdicts_: Sequence[dict[str, Any]], budgets: Sequence[float]
              ) -> dict[str, list[str]]:
    """Per point on the front's axis (by label), the points that dominate it: at no more cost (budget, or mean
    training seconds in a study trained for epochs) and significantly more accurate (their verdict says so);
    an empty list: on the Pareto front. Empty for a study with one budget (no front)."""
    axis = front_axis(budgets)
    if axis is None:
        return {}
    cost = "budget" if axis == "budget" else "train_seconds"
    pts = [a for a in aggs if a["test_accuracy"] is not None and a[cost]]
    return {p["label"]: [q["label"] for q in pts if q is not p and q[cost] <= p[cost] and _beats(verdicts_, q, p)]
            for p in pts}


def _beats(verdicts_: Sequence[dict[str, Any]], q: dict[str, Any], p: dict[str, Any]) -> bool:
    v = between(verdicts_, (q["model"], q["budget"]), (p["model"], p["budget"]))
    return v is not None and winner(v) == (q["model"], q["budget"])
