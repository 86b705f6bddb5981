"""Run a plan of named training runs through the library and print one table of measured results.

    python bench/bars.py gpu --out /tmp/bars --results $OUT/bars.json --set checkpoints=false
    python bench/bars.py gpu --dry-run                # tiny slices on any device, to prove every entry runs

The GPU plan is the headline: the whole `mnistbench compare --preset standard` study (five models, full data,
each model's GPU recipe), then the CNN to 99 % and to 99.5 % validation accuracy (early stop at the target,
on the validation split, never on test). `--budget-s` (default 420) starts no entry after that many seconds,
so the plan ends within about 8 minutes on one GPU even when an entry runs long. The CPU bars are timed as
whole commands instead: bench/cpu_bars.sh.

A training entry is `mnistbench.run.train(resolve(overrides))`, exactly what `mnistbench train` does; a study
entry is `mnistbench.study.compare.compare(...)`, what `mnistbench compare` does. The table reports what
summary.json (or results.json) says. Nothing here is a test: results go to bench/results/ (bench/new_result.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

# name -> config overrides. Each line is one measured claim (docs/BENCHMARKS.md, GPU).
PLANS: dict[str, dict[str, dict]] = {
    "gpu": {
        # a GPU machine here reaches no network, so no ImageNet / COCO weights: every model from scratch
        "standard-study": {"compare": {"preset": "standard", "sets": {"pretrained": False}}},
        # time to 99 % / 99.5 % is read on the validation split (early stop at the target), never on test
        "cnn-to-val99": {"model": "cnn", "recipe": "gpu", "epochs": 8, "target_accuracy": 0.99},
        "cnn-to-val995": {"model": "cnn", "recipe": "gpu", "epochs": 16, "target_accuracy": 0.995},
    },
}
DRY = {"checkpoints": False, "epochs": 1, "train_limit": 256, "test_limit": 128, "val_size": 128,
       "inference_benchmark": False, "compile": False}
DRY_DETECTOR = {"scenes_per_epoch": 64, "test_scenes": 16, "val_scenes": 16, "val_digits": 64}
COLUMNS = ("test_accuracy", "test_macro_f1", "best_val_accuracy", "time_to_accuracy", "train_seconds",
           "compile_seconds", "epochs_completed", "train_images_per_second", "inference_ms_per_image",
           "inference_images_per_second", "inference_ms_per_scene", "inference_scenes_per_second", "map_50", "map",
           "weights_source", "device", "precision", "wall_seconds")


def run_plan(plan: dict[str, dict], common: dict, dry: bool, out: Path, results: Path, budget_s: float) -> list[dict]:
    rows, start = [], time.perf_counter()
    for name, overrides in plan.items():
        if time.perf_counter() - start > budget_s:
            rows.append({"name": name, "status": "skipped: time budget spent"})
            continue
        t0 = time.perf_counter()
        try:
            study = overrides.get("compare")
            row = _study(name, study, common, dry, out) if study else _train(name, overrides, common, dry, out)
        except Exception as e:  # noqa: BLE001 - one failing entry must not lose the others
            traceback.print_exc()
            row = {"name": name, "status": f"failed: {type(e).__name__}: {e}"}
        row["command_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
        results.write_text(json.dumps(rows, indent=2))
    return rows


def _train(name: str, overrides: dict, common: dict, dry: bool, out: Path) -> dict:
    from mnistbench.config import resolve
    from mnistbench.run import train

    cfg_in = {**overrides, **common, "out": str(out / name), "quiet": True, **(DRY if dry else {})}
    s = train(resolve(cfg_in))
    return {"name": name, "status": "ok", **{k: s.get(k) for k in COLUMNS}}


def _study(name: str, study: dict, common: dict, dry: bool, out: Path) -> dict:
    """A whole `compare` study: its rows, and the sum of its runs' training seconds."""
    from mnistbench.study.compare import compare

    sets = {**study.get("sets", {}), **{k: v for k, v in common.items() if k != "data_dir"},
            **(DRY | DRY_DETECTOR if dry else {})}
    rows = compare(preset=study["preset"], out=out / name, data_dir=common.get("data_dir", ""), overrides=sets,
                   quiet=True, log=lambda line: print(line, flush=True))
    ok = all(r["status"] == "ok" for r in rows)
    return {"name": name, "status": "ok" if ok else "failed: " + "; ".join(r["error"] for r in rows if r["error"]),
            "train_seconds": sum(r["train_seconds"] or 0 for r in rows),
            "runs": [{k: r.get(k) for k in ("model", "status", "test_accuracy", "train_seconds", "precision",
                                            "device", "map_50")} for r in rows]}


def table(rows: list[dict]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    head = ["name", "status", "best_val_accuracy", "test_accuracy", "train_seconds", "compile_seconds",
            "epochs_completed", "map_50"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("plan", choices=sorted(PLANS))
    p.add_argument("--data-dir", default="")
    p.add_argument("--out", default="runs/bars", help="where the run folders go")
    p.add_argument("--results", default="", help="the JSON table (default OUT/bars.json)")
    p.add_argument("--budget-s", type=float, default=420.0, help="start no entry after this many seconds")
    p.add_argument("--only", default="", help="comma-separated name prefixes")
    p.add_argument("--dry-run", action="store_true", help="tiny slices, to check that every run starts")
    p.add_argument("--set", action="append", default=[], help="key=value applied to every run")
    a = p.parse_args()
    plan = {k: v for k, v in PLANS[a.plan].items()
            if not a.only or any(k.startswith(o) for o in a.only.split(","))}
    from mnistbench.config import parse_sets
    common = {"data_dir": a.data_dir, **parse_sets(a.set)} if a.data_dir else parse_sets(a.set)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_plan(plan, common, a.dry_run, out, Path(a.results or out / "bars.json"), a.budget_s)
    print(table(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
