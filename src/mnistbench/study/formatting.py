"""Numbers and names as the study report prints them."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any


def si(x: float) -> str:
    """3 significant digits with a K / M / G suffix: '12.7 K'."""
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def secs(x: float) -> str:
    """Seconds with fewer decimals the larger they are."""
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def ratio(x: float) -> str:
    """A 'n× as large' factor."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def pct(x: float) -> str:
    """A fraction as a percentage: '98.50 %'."""
    return f"{100 * x:.2f} %"


def p_value(p: float) -> str:
    """A p-value as a reader needs it: '< 0.001', '0.012', '0.41', '1'."""
    return "< 0.001" if p < 0.001 else f"= {p:.2g}"


def p_at_most(p: float) -> str:
    """An upper bound on p-values, rounded up so that it holds: '< 0.001', '≤ 0.024', '≤ 1'."""
    return "< 0.001" if p < 0.001 else f"≤ {_two_digits(p, up=True):.2g}"


def p_at_least(p: float) -> str:
    """A lower bound on p-values, rounded down so that it holds: '≥ 0.41', '= 1' when every one is 1."""
    return "= 1" if p >= 1 else f"≥ {_two_digits(p, up=False):.2g}"


def _two_digits(p: float, *, up: bool) -> float:
    """p rounded up (or down) to two significant digits."""
    if p <= 0:
        return 0.0
    scale = 10.0 ** (math.floor(math.log10(p)) - 1)
    digits = p / scale
    return (math.ceil(digits - 1e-9) if up else math.floor(digits + 1e-9)) * scale


def interval(low: float, high: float) -> str:
    """An accuracy interval in percent: '97.91–98.47'."""
    return f"{100 * low:.2f}–{100 * high:.2f}"


def short(x: float) -> str:
    """A number in at most 4 significant digits, powers of ten short: '60', '2.5e13', '2e9'."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.4g}")


def budget_text(budget: float, unit: str | None) -> str:
    """A training budget in its unit: '60 s', '5e13 FLOPs'."""
    return f"{short(budget)} FLOPs" if unit == "FLOPs" else f"{budget:g} s"


def names(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


FORMATS = {
    "test_accuracy": lambda x: f"{100 * x:.2f}", "test_macro_f1": lambda x: f"{x:.4f}",
    "test_loss": lambda x: f"{x:.4f}", "test_detection_loss": lambda x: f"{x:.4f}", "train_seconds": secs,
    "time_to_99": secs, "images_seen": si, "train_images_per_second": lambda x: f"{x:,.0f}",
    "inference_ms_per_image": lambda x: f"{x:.3g}", "inference_images_per_second": lambda x: f"{x:,.0f}",
    "inference_ms_per_scene": lambda x: f"{x:.3g}", "inference_scenes_per_second": lambda x: f"{x:,.0f}",
    "params": si, "flops_per_image": si, "flops_per_sample": si, "train_flops": si,
    "peak_memory_mb": lambda x: f"{x:,.0f}", "map_50": lambda x: f"{x:.3f}",
}


def value(row: dict[str, Any], col: str) -> str:
    """A row's numeric column in its table format; '–' when unknown."""
    v = row.get(col)
    return "–" if v is None else FORMATS[col](v)


def cell(a: dict[str, Any], col: str, spread: bool = True) -> str:
    """An aggregate's column as 'mean ± std' (std only with several seeds and `spread`); '–' when unknown."""
    v = a.get(col)
    if v is None:
        return "–"
    f = FORMATS[col]
    std = a.get(f"{col}_std") if spread else None
    text = f(v) if not std else f"{f(v)} ± {f(std)}"  # no "± 0" for what seeds do not change (parameters)
    n = a.get(f"{col}_n", a["ok"])
    return text if n == a["ok"] else f"{text} ({n}/{a['ok']} seeds)"
