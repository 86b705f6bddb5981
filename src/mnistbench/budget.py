"""How long a run trains: the Plan (steps, validation points, precision) and how a budget sets it.

Three ways to size a run:
- epochs: steps_per_epoch × epochs, validation at every epoch's end;
- a budget in seconds (`budget_s`): planned from a measured step time, then re-planned from the run's own
  training steps at REPLAN_AT fractions of the plan, so the time actually trained lands on the budget even when
  the first estimate was off or the step time drifts (a detector's does, as it learns);
- a budget in training FLOPs (`budget_flops`): 3 × forward FLOPs per sample × samples seen, planned exactly and
  never re-planned, so the same budget gives the same steps on a laptop, a GPU or a cluster.
The learning-rate schedule is a function of the run's place in its plan (`Plan.schedule_step`): a re-plan lays
the rest of the schedule over the new number of steps, so the schedule always completes its shape.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

REPLAN_AT = (0.1, 0.5, 0.9)  # fractions of the plan (its steps or its seconds) at which a seconds budget re-plans
TOLERANCE, TOLERANCE_S = 0.03, 1.0  # a seconds budget holds when realized is within ±3 % or ±1 s of it
FLOPS_PER_STEP_FACTOR = 3  # training FLOPs ≈ forward + backward ≈ 3 forward passes


@dataclass(frozen=True)
class Plan:
    """How long a run trains and when it validates; what was measured to decide it.

    budget: {"budget_s", "step_seconds", "planned_steps", "images_seen"} for a seconds budget (planned_steps and
    images_seen as first planned), {"budget_flops", "flops_per_sample", "planned_steps", "images_seen"} for a
    FLOPs budget, None for epochs. replans: each re-plan of a seconds budget, in order: {"step", "planned_before",
    "planned_after", "step_seconds" (the mean since the previous re-plan), "train_seconds"}.
    """

    total_steps: int
    val_steps: tuple[int, ...]               # global steps after which validation runs
    precision: str                           # "bf16" or "fp32", as the Runtime uses it
    step_ms: dict[str, float] | None = None  # measured ms per training step, by precision (None: not measured)
    budget: dict[str, Any] | None = None
    replans: tuple[dict[str, Any], ...] = ()
    precision_source: str = ""               # how the precision was decided (calibrate.choose_runtime)
    flops_per_sample: int | None = None      # forward FLOPs of one training sample (image or scene)
    val_points: int = 0                      # budgeted runs: how many evenly spaced validations
    first_total: int = field(default=0)      # the total before any re-plan (the schedule's own length)

    def __post_init__(self) -> None:
        if not self.first_total:
            object.__setattr__(self, "first_total", self.total_steps)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "val_steps": list(self.val_steps), "replans": [dict(r) for r in self.replans]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """A recorded plan (older records lack the newer keys: they take their defaults)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "val_steps": tuple(d["val_steps"]), "replans": tuple(d.get("replans") or ())})

    @property
    def kind(self) -> str:
        """'seconds', 'flops' or 'epochs'."""
        if not self.budget:
            return "epochs"
        return "flops" if self.budget.get("budget_flops") else "seconds"

    # --- the schedule over re-planned steps ----------------------------------------------------------
    def schedule_step(self, step: int) -> tuple[float, int]:
        """(step, total) to evaluate the learning-rate schedule at: exactly (step, total) without re-plans; with
        them, the point of the first plan's schedule that the run has reached, each re-plan laying the rest of
        that schedule over its remaining steps, so the last step is the schedule's last step."""
        if not self.replans:
            return step, self.total_steps
        at, start, total, end = 0.0, 0, self.first_total, self.first_total - 1
        for r in self.replans:
            if step < r["step"]:
                break
            at, start, total = _along(at, start, total, r["step"], end), r["step"], r["planned_after"]
        return _along(at, start, total, step, end), self.first_total

    # --- re-planning a seconds budget ------------------------------------------------------------------
    def replan_due(self, step: int, seconds: float) -> bool:
        """Whether to re-plan after `step` steps and `seconds` of training: at the next REPLAN_AT fraction of the
        planned steps or of the budget's seconds, whichever comes first (a seconds budget only). The fraction of
        the seconds catches steps that turn slower than planned, that of the steps steps that turn faster."""
        if self.kind != "seconds" or len(self.replans) >= len(REPLAN_AT) or step > self.total_steps:
            return False
        if self.replans and (step <= self.replans[-1]["step"] or step == self.total_steps):
            return False  # at the last planned step only a plan never re-planned (one made from no timing) grows
        at = REPLAN_AT[len(self.replans)]
        return step >= round(at * self.total_steps) or seconds >= at * self.budget["budget_s"]

    def replanned(self, step: int, step_seconds: float, train_seconds: float) -> Plan:
        """The plan after a re-plan at `step`: the remaining budget divided by the mean step time since the
        previous re-plan (`step_seconds`); the validations still to come kept on an even grid over the new total."""
        left = self.budget["budget_s"] - train_seconds
        more = round(left / step_seconds) if step_seconds > 0 and math.isfinite(step_seconds) else 0
        total = max(step + 1, step + more)
        record = {"step": step, "planned_before": self.total_steps, "planned_after": total,
                  "step_seconds": round(step_seconds, 6), "train_seconds": round(train_seconds, 4)}
        return self.with_replan(record)

    def with_replan(self, record: dict[str, Any]) -> Plan:
        """This plan with a re-plan applied (a new one, or one replayed from a record on resume)."""
        step, total = record["step"], record["planned_after"]
        passed = [s for s in self.val_steps if s <= step]
        left = max(1, (self.val_points or len(self.val_steps)) - len(passed))  # the validations still to come
        later = even_steps(total, len(passed) + left)[-left:]  # where they fall on an even grid over the new plan
        if later[0] <= step:  # the plan shrank past them: spread them over the steps left instead
            later = tuple(step + max(1, round((total - step) * k / left)) for k in range(1, left + 1))
        val_steps = tuple(sorted({*passed, *later}))
        return replace(self, total_steps=total, val_steps=val_steps, replans=(*self.replans, dict(record)))


def _along(at: float, start: int, total: int, step: int, end: int) -> float:
    """The schedule point of `step` on the segment that begins at step `start` (schedule point `at`) and ends at
    step total - 1 (schedule point `end`)."""
    span = total - 1 - start
    return float(end) if span <= 0 else at + (step - start) * (end - at) / span


def even_steps(total: int, points: int) -> tuple[int, ...]:
    """`points` validation steps evenly spaced over `total` steps, the last at `total`."""
    points = max(1, min(points, total))
    return tuple(sorted({round(total * k / points) for k in range(1, points + 1)}))


def epoch_steps(epochs: float, steps_per_epoch: int) -> tuple[int, tuple[int, ...]]:
    """(total steps, validation steps) of `epochs` epochs: validation at every epoch's end and, when the last
    epoch is partial (epochs=1.5), at its last step too."""
    total = max(1, round(epochs * steps_per_epoch))
    ends = range(steps_per_epoch, total + 1, steps_per_epoch)
    return total, tuple(sorted({*ends, total}))


def seconds_plan(budget_s: float, step_seconds: float, batch_size: int, val_points: int, **common: Any) -> Plan:
    """The first plan of a seconds budget: as many steps as fit at the measured step time."""
    seconds = step_seconds if math.isfinite(step_seconds) and step_seconds > 0 else budget_s  # untimed: one step
    seconds = round(seconds, 6) or 1e-6  # the recorded step time is the one the steps are planned from
    total = max(1, int(budget_s / seconds))
    budget = {"budget_s": budget_s, "step_seconds": seconds, "planned_steps": total,
              "images_seen": total * batch_size}
    return Plan(total, even_steps(total, val_points), budget=budget, val_points=val_points, **common)


def flops_plan(budget_flops: float, flops_per_sample: int, batch_size: int, val_points: int, **common: Any
               ) -> Plan:
    """The plan of a FLOPs budget: the most steps whose training FLOPs stay within it (at least one)."""
    per_step = FLOPS_PER_STEP_FACTOR * flops_per_sample * batch_size
    total = max(1, int(budget_flops // per_step))
    budget = {"budget_flops": budget_flops, "flops_per_sample": flops_per_sample, "planned_steps": total,
              "images_seen": total * batch_size}
    return Plan(total, even_steps(total, val_points), budget=budget, val_points=val_points,
                flops_per_sample=flops_per_sample, **common)


def train_flops(flops_per_sample: int | None, samples: int) -> float | None:
    """Training FLOPs of `samples` samples: 3 × forward FLOPs per sample × samples."""
    return None if flops_per_sample is None else float(FLOPS_PER_STEP_FACTOR * flops_per_sample * samples)


def budget_error(budget: dict[str, Any] | None, train_seconds: float, flops: float | None) -> float | None:
    """Realized ÷ budget − 1: training seconds against a seconds budget, training FLOPs against a FLOPs budget."""
    if not budget:
        return None
    if budget.get("budget_flops"):
        return None if flops is None else flops / budget["budget_flops"] - 1
    return train_seconds / budget["budget_s"] - 1


def within_tolerance(budget_s: float | None, error: float | None) -> bool:
    """Whether a seconds budget held: training within ±3 % or ±1 s of it. A FLOPs budget always holds: its steps
    are planned exactly (the most whole steps within it)."""
    if error is None or not budget_s:
        return True
    return abs(error) <= max(TOLERANCE, TOLERANCE_S / budget_s)
