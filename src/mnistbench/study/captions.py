"""The report's captions that say what a test covers: the paired comparisons, the verdicts over seeds, the
accuracy-against-training-time figure."""
from __future__ import annotations

import re
from typing import Any

from .paired import ALPHA
from .verdicts import SEED_TEST_MIN


def more_seeds(command: str | None, seeds: int = SEED_TEST_MIN) -> str:
    """The study's rerun command with `--seeds` raised to `seeds` (finished seeds are kept and skipped)."""
    if not command:
        return f"the study's compare command with --seeds {seeds}"
    if re.search(r"--seeds[ =]\d+", command):
        return re.sub(r"--seeds[ =]\d+", f"--seeds {seeds}", command)
    return f"{command} --seeds {seeds}"


def _tests(n: int, what: str = "test") -> str:
    return f"{n} {what}{'s' * (n != 1)}"


def comparisons(an: Any) -> list[str]:
    """The caption of the paired comparisons: what b, c, p and Holm p are, which pairs are tested, and what the
    tests cover (with fewer than SEED_TEST_MIN seeds, what they do not and how to get more seeds)."""
    kinds = {t["kind"] for t in an.comparisons}
    out = [f"Each row pairs two runs on the same test images (the same official test-set indices), seed k of one "
           "with seed k of the other. b: images A gets right and B wrong; c: the reverse. p: the exact two-sided "
           "McNemar test (under no difference each of the b + c disagreements is a fair coin); Holm p: corrected "
           f"over the study's {_tests(len(an.comparisons))}"
           + (", of every kind" if len(kinds) > 1 else "") + f". A difference is called significant when Holm p < "
           f"{ALPHA:g}."]
    if "budgets" in kinds:
        out.append("Budget gains pair each model with itself at the next budget (A: the smaller budget), so "
                   "\"B more accurate\" is a significant gain; they are in the same Holm family as the rest, so a "
                   "gain the report calls significant holds together with every other claim.")
    if "across" in kinds:
        out.append("Across budgets, A is the point with the smaller budget: a point is off the Pareto front when "
                   "one at no more budget is significantly more accurate.")
    seeds = max((len(v["seeds"]) for v in an.verdicts), default=0)
    if seeds < SEED_TEST_MIN:
        out.append("These tests cover these trained networks on these test images: whether the gap would hold on "
                   "other test images drawn like them. They do not cover training randomness: another seed trains "
                   "other networks, which may rank differently, so the findings speak of these runs. A claim about "
                   f"the architectures needs at least {SEED_TEST_MIN} seeds per model (a test across seeds): "
                   f"`{more_seeds(an.meta.get('command'))}`.")
    return out


def verdicts(an: Any) -> str:
    """The caption of the verdicts table."""
    across = any(v["seed_test_p"] is not None for v in an.verdicts)
    n = sum(v["seed_test_p"] is not None for v in an.verdicts)
    text = ("Per pair, the seeds in which A is significantly more accurate, those in which B is, and those with no "
            "significant difference. A winner is named only when it is more accurate in every seed"
            + (" and across seeds" if across else "") + "; \"mixed\" when each is more accurate in some seed (a "
            "reversal, so no winner); otherwise no winner.")
    if across:
        text += (f" Across seeds: a paired t-test on the per-seed accuracy differences (n − 1 degrees of freedom), "
                 f"Holm-corrected over the study's {_tests(n, 'across-seed test')}; it covers training randomness "
                 "on these test images, as McNemar covers the test images for these networks, and a claim about the "
                 "architectures needs both. The t-test is used rather than the exact sign-flip test, which can "
                 "never give a two-sided p below 2 / 2^n (0.25 with 3 seeds, 0.0625 with 5) and so could not reject "
                 "below 6 seeds; the t-test assumes roughly normal per-seed differences, and with 3 seeds rejects "
                 "only a very consistent gap (|t| > 4.303).")
    return text


def training_time(an: Any) -> str:
    """The caption of the accuracy-against-training-seconds figure."""
    if an.front_axis is None:
        return ("Test accuracy against the training seconds actually spent (mean ± std over seeds). Every model had "
                "the same budget: the spread in seconds is the budget's tolerance, so no front is drawn and nothing "
                "is ranked by it.")
    if an.front_axis == "budget":
        where = ("stars: points on the Pareto front of accuracy against budget (no point at no more budget is "
                 "significantly more accurate)" if an.budget_unit == "s" else "the budgets are in training FLOPs, "
                 "so the Pareto front is starred in the figure against training FLOPs")
        return f"Test accuracy against the training seconds actually spent (mean ± std over seeds); {where}."
    return ("Test accuracy against training seconds (mean ± std over seeds); stars: the Pareto front (no model "
            "trained in no more time and is significantly more accurate).")
