"""The statistics that compare runs, against values computed by hand (each computation in the comment)."""
from __future__ import annotations

import math

import pytest

from mnistbench.metrics import (
    binomial_cdf_half,
    discordant,
    holm,
    mcnemar_exact,
    student_t_two_sided,
    t_test_paired,
    wilson_interval,
)


def integer_tail(k: int, n: int) -> float:
    """The reference: P(X <= k), X ~ Bin(n, 1/2), as the exact integer sum of C(n, i) over 2^n (each C(n, i + 1)
    from C(n, i) in integers), one rounding at the final division."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    term = total = 1
    for i in range(k):
        term = term * (n - i) // (i + 1)
        total += term
    return total / 2 ** n


def test_wilson_interval_of_8_in_10():
    # p = 0.8, n = 10, z = 1.95996, z² = 3.84146
    # centre = (p + z²/2n) / (1 + z²/n) = (0.8 + 0.192073) / 1.384146 = 0.716741
    # half   = z / (1 + z²/n) · sqrt(p(1-p)/n + z²/4n²) = 1.416001 · sqrt(0.016 + 0.0096037) = 0.226577
    # -> [0.490164, 0.943318] (the textbook Wilson interval of 8/10: 0.490 to 0.943)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490164, abs=2e-6) and high == pytest.approx(0.943318, abs=2e-6)


def test_wilson_interval_at_the_edges_stays_in_0_1():
    # 0/10: centre = 0.192073 / 1.384146 = 0.138767 and half = 1.416001 · sqrt(0.0096037) = 0.138767
    # -> [0, 0.277534]; 10/10 mirrors it: [0.722466, 1]
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.277534, abs=2e-6)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.722466, abs=2e-6) and high == pytest.approx(1.0, abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 9,900 / 10,000: centre = (0.99 + 0.000192073) / 1.000384146 = 0.989812,
    # half = 1.959211 · sqrt(9.9e-7 + 9.6037e-9) = 0.0019588 -> [0.987853, 0.991771], about ± 0.2 points
    low, high = wilson_interval(9900, 10000)
    assert low == pytest.approx(0.987853, abs=2e-6) and high == pytest.approx(0.991771, abs=2e-6)


def test_binomial_cdf_of_a_fair_coin():
    # P(X <= 2), X ~ Bin(12, 1/2) = (C(12,0) + C(12,1) + C(12,2)) / 2^12 = (1 + 12 + 66) / 4096 = 79 / 4096
    assert integer_tail(2, 12) == 79 / 4096
    assert binomial_cdf_half(2, 12) == pytest.approx(79 / 4096, rel=1e-12)
    assert binomial_cdf_half(-1, 5) == 0.0 and binomial_cdf_half(5, 5) == 1.0
    assert binomial_cdf_half(0, 20_000) == 0.0  # 2^-20000 underflows to 0, without an overflow on the way


GRID = [(0, 0), (1, 1), (1, 0), (0, 1), (0, 10_000), (10_000, 0), (1, 9_999), (5_000, 5_000), (4_999, 5_001),
        (4_950, 5_050), (4_800, 5_200), (4_500, 5_500), (3_000, 7_000), (20, 40), (30, 12), (11, 1), (25, 15),
        (499, 501), (2, 3), (7, 7), (0, 1_075), (1_000, 1_001)] + [(b, n - b) for n in range(1, 41) for b in
                                                                  range(n + 1)]


@pytest.mark.parametrize("b, c", GRID[:22])
def test_exact_mcnemar_agrees_with_the_integer_sum_to_1e_9(b, c):
    # the same p as min(1, 2 · integer_tail(min(b, c), b + c)), including the extremes: no disagreement,
    # all on one side (2 · 2^-10000 underflows to 0 in both), an even split (p = 1)
    n = b + c
    reference = min(1.0, 2 * integer_tail(min(b, c), n)) if n else 1.0
    assert mcnemar_exact(b, c) == pytest.approx(reference, rel=1e-9, abs=0.0)


def test_binomial_tail_agrees_with_the_integer_sum_on_every_small_case():
    worst = max(abs(binomial_cdf_half(k, n) / integer_tail(k, n) - 1) for n in range(1, 80) for k in range(n + 1))
    assert worst < 1e-9
    for b, c in GRID[22:]:
        n = b + c
        assert mcnemar_exact(b, c) == pytest.approx(min(1.0, 2 * integer_tail(min(b, c), n)), rel=1e-9, abs=0.0)


def test_student_t_against_closed_forms_and_the_critical_values():
    # df = 1 (Cauchy): P(|T| >= t) = 1 - (2/pi) atan(t); t = 1 -> 0.5
    assert student_t_two_sided(1.0, 1) == pytest.approx(0.5, rel=1e-12)
    # df = 2: P(|T| >= t) = 1 - t / sqrt(2 + t^2); t = 1 -> 1 - 1/sqrt(3) = 0.4226497
    assert student_t_two_sided(1.0, 2) == pytest.approx(1 - 1 / math.sqrt(3), rel=1e-12)
    # the two-sided 5 % critical values (STATISTICS.md, given to 4 digits): n = 3, 5, 10 seeds -> df 2, 4, 9
    for t, df in ((4.303, 2), (2.776, 4), (2.262, 9), (12.706, 1)):
        assert student_t_two_sided(t, df) == pytest.approx(0.05, rel=2e-3)
    assert student_t_two_sided(0.0, 5) == 1.0 and student_t_two_sided(1e9, 3) < 1e-15


def test_paired_t_test_on_per_seed_differences():
    # d = [1, 2, 3]: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641, df 2: p = 1 - t / sqrt(2 + t^2) = 0.0741799
    assert t_test_paired([1.0, 2.0, 3.0]) == pytest.approx(1 - math.sqrt(12) / math.sqrt(14), rel=1e-12)
    assert t_test_paired([-1.0, -2.0, -3.0]) == t_test_paired([1.0, 2.0, 3.0])  # two-sided
    assert t_test_paired([0.0, 0.0, 0.0]) == 1.0 and t_test_paired([0.01, 0.01, 0.01]) == 0.0
    assert t_test_paired([0.01, -0.01, 0.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        t_test_paired([0.5])


@pytest.mark.parametrize(("b", "c", "p"), [
    (0, 0, 1.0),                 # no discordant image: nothing to test
    (1, 0, 1.0),                 # n = 1: 2 · P(X <= 0) = 2 · 1/2 = 1
    (5, 0, 0.0625),              # n = 5: 2 · 1/32
    (6, 0, 0.03125),             # n = 6: 2 · 1/64, the smallest n that can reach p < 0.05
    (10, 2, 158 / 4096),         # n = 12: 2 · (1 + 12 + 66) / 4096 = 0.0385742
    (2, 10, 158 / 4096),         # two-sided: symmetric in b and c
    (3, 5, 186 / 256),           # n = 8: 2 · (1 + 8 + 28 + 56) / 256 = 0.7265625
    (4, 4, 1.0),                 # n = 8: 2 · 163 / 256 > 1, capped
])
def test_exact_mcnemar_against_hand_computed_values(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-12)


def test_mcnemar_a_one_image_gap_is_never_significant_a_large_one_is():
    assert mcnemar_exact(31, 30) > 0.9 and mcnemar_exact(1, 0) == 1.0
    assert mcnemar_exact(120, 30) < 1e-12
    assert 0.0 <= mcnemar_exact(10_000, 0) < 1e-300  # large n: exact, no overflow


def test_holm_adjustment():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4; sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06,
    # 0.04·1 = 0.04 -> running max 0.06; back in the given order: [0.03, 0.06, 0.06, 0.02]
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # [0.5, 0.6]: 0.5·2 = 1.0, then max(1.0, 0.6·1) = 1.0
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([]) == [] and holm([0.2]) == [0.2]


def test_discordant_counts_treat_nothing_found_as_wrong():
    target = [1, 2, 3, 4, 5]
    a = [1, 2, 0, 4, -1]   # right on 1, 2, 4
    b = [1, 0, 3, -1, -1]  # right on 1, 3
    # A right and B wrong: images 2 and 4 -> b = 2; A wrong and B right: image 3 -> c = 1
    assert discordant(target, a, b) == (2, 1)
    with pytest.raises(ValueError):
        discordant(target, a, b[:3])
