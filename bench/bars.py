"""Run a plan of named training runs through the library and print one table of measured results.

    python bench/bars.py gpu --data-dir DATA --out /tmp/bars --results $OUT/bars.json --set checkpoints=false
    python bench/bars.py gpu --only cnn --dry-run --data-dir ../shared/data    # tiny versions, to check the plan

The CPU bars are timed as whole commands instead: bench/cpu_bars.sh.

Each run is `mnistbench.run.train(resolve(overrides))`, exactly what `mnistbench train` does; the
table reports what summary.json says. Nothing here is a test: a measured row becomes a file in bench/results/
(bench/new_result.py), which bench/results.py renders into docs/BENCHMARKS.md and the README.
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
        # time to 99 % / 99.5 % is read on the validation split (early stop at the target), never on test
        "cnn-to-val99": {"model": "cnn", "recipe": "gpu", "epochs": 8, "target_accuracy": 0.99},
        "cnn-to-val995": {"model": "cnn", "recipe": "gpu", "epochs": 16, "target_accuracy": 0.995},
        "vit-gpu": {"model": "vit", "recipe": "gpu"},
        "alexnet-long": {"model": "alexnet", "recipe": "long", "pretrained": False},
        "vgg16-long": {"model": "vgg16", "recipe": "long", "pretrained": False},
        "vgg16-224-notebook-epoch": {"model": "vgg16", "pretrained": False, "image_size": 224, "finetune": "full",
                                     "epochs": 1, "batch_size": 128, "val_size": 1000},
        "frcnn-long": {"model": "frcnn", "recipe": "long"},
    },
}
DRY = {"checkpoints": False, "epochs": 1, "train_limit": 256, "test_limit": 128, "val_size": 128,
       "inference_benchmark": False}
COLUMNS = ("test_accuracy", "test_macro_f1", "best_val_accuracy", "time_to_accuracy", "train_seconds",
           "compile_seconds", "epochs_completed", "train_images_per_second", "inference_ms_per_image",
           "inference_images_per_second", "inference_ms_per_scene", "inference_scenes_per_second", "map_50", "map",
           "weights_source", "device", "precision", "wall_seconds")


def run_plan(plan: dict[str, dict], common: dict, dry: bool, out: Path, results: Path, budget_s: float) -> list[dict]:
    from mnistbench.config import resolve
    from mnistbench.run import train

    rows, start = [], time.perf_counter()
    for name, overrides in plan.items():
        if time.perf_counter() - start > budget_s:
            rows.append({"name": name, "status": "skipped: time budget spent"})
            continue
        cfg_in = {**overrides, **common, "out": str(out / name), "quiet": True}
        if dry:
            cfg_in.update(DRY)
        t0 = time.perf_counter()
        try:
            s = train(resolve(cfg_in))
            row = {"name": name, "status": "ok", **{k: s.get(k) for k in COLUMNS}}
        except Exception as e:  # noqa: BLE001 - one failing run must not lose the others
            traceback.print_exc()
            row = {"name": name, "status": f"failed: {type(e).__name__}: {e}"}
        row["command_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
        results.write_text(json.dumps(rows, indent=2))
    return rows


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
    p.add_argument("--budget-s", type=float, default=float("inf"), help="start no run after this many seconds")
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
