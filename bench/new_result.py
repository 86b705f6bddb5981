"""A new results file in bench/results/ from finished run folders of one command, one folder per seed.

    python bench/new_result.py cnn --command "mnistbench train --model cnn --seed {seed}" \
        --seconds 9.1,10.2,10.0 runs/cpu-bars/fp32-cnn-s0 runs/cpu-bars/fp32-cnn-s1 runs/cpu-bars/fp32-cnn-s2
    python bench/results.py          # then render the tables

Each run's fields come from its summary.json, its seed, commit and versions from its config.json; the CPU
(model, physical cores, memory, the flags that decide PyTorch's kernels) from this machine, so run it where
the runs ran. The whole-command seconds are the caller's measurement (/usr/bin/time, as bench/cpu_bars.sh
prints them): a run folder does not hold the process's start-up or its figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from datetime import date
from pathlib import Path

from results import RESULTS, RUN_FIELDS, ResultError, check

from mnistbench.errors import UserError
from mnistbench.fsio import read_json, write_bytes
from mnistbench.record import CONFIG, read_config, read_summary

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones bench/cpu_bars.sh prints


def this_machine(device: str) -> dict:
    """This CPU's model, physical cores, memory and FLAGS; the GPU when the runs' device names one."""
    from mnistbench.device import physical_cores

    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    info = cpuinfo.read_text() if cpuinfo.exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set(" ".join(re.findall(r"^flags\s*:\s*(.+)$", info, re.M)).split())
    memory = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.M) if meminfo.exists() else None
    gpu = re.fullmatch(r"cuda \((.+)\).*", device)
    return {"cpu": model.group(1).strip() if model else platform.processor() or platform.machine(),
            "cores": physical_cores(), **({"memory_gib": round(int(memory.group(1)) / 2**20)} if memory else {}),
            "flags": [f for f in FLAGS if f in flags], "gpu": gpu.group(1) if gpu else None}


def _as_recorded(fields: dict) -> dict:
    """Seconds to a tenth (what a whole-command timer resolves), a budget error to 0.01 %: the precision the
    tables print them at; everything else as the run wrote it."""
    return {k: round(v, 1) if k.endswith("_seconds") and isinstance(v, float) else
            round(v, 4) if k == "budget_error" else v for k, v in fields.items()}


def new_result(name: str, command: str, seconds: list[float], run_dirs: list[str], variant: str | None = None,
               folder: Path = RESULTS) -> Path:
    """Write the results file for `run_dirs` (finished runs of `command`) and their whole-command `seconds`."""
    if len(seconds) != len(run_dirs):
        raise ResultError(f"{len(run_dirs)} run folders but {len(seconds)} whole-command times")
    if len(run_dirs) > 1 and "{seed}" not in command:
        raise ResultError("several runs: write the command with {seed} where each run's seed goes")
    docs, summaries = [read_json(Path(d) / CONFIG, "run folder") for d in run_dirs], [read_summary(d) for d in run_dirs]
    runs = [_as_recorded({"seed": read_config(d)["seed"], **{k: s[k] for k in sorted(RUN_FIELDS)
                                                             if s.get(k) is not None},
                          "whole_command_seconds": secs}) for d, s, secs in zip(run_dirs, summaries, seconds)]
    commits = {doc.get("git_commit") for doc in docs}
    if None in commits or len(commits) > 1:
        raise ResultError(f"the runs' config.json name {'no' if None in commits else 'different'} git commits "
                          f"({', '.join(sorted(str(c) for c in commits))}); write this results file by hand")
    versions = docs[0].get("versions", {})
    row = {"name": name, "variant": variant, "command": command,
           "precision": " / ".join(sorted({s["precision"] for s in summaries})), "date": date.today().isoformat(),
           "commit": commits.pop(), "machine": this_machine(summaries[0].get("device", "")),
           "software": {k: versions[k] for k in ("torch", "python") if k in versions}, "runs": runs,
           "source": "bench/new_result.py: the run folders' summary.json and config.json; whole-command seconds "
                     "as measured around each command"}
    return _write(row, folder)


def study_result(name: str, command: str, seconds: float, study: Path, variant: str | None = None,
                 folder: Path = RESULTS) -> Path:
    """Write the results file of a finished `mnistbench compare` study: its whole-command seconds, and per run
    (model, seed, budget) what its summary says."""
    study = Path(study)
    doc = read_json(study / "results.json", "study folder")
    runs = [r for r in doc["rows"] if r["status"] == "ok"]
    configs = [read_json(study / r["run_dir"] / CONFIG, "run folder") for r in runs]
    commits = {c.get("git_commit") for c in configs}
    if None in commits or len(commits) > 1:
        raise ResultError(f"the study's runs name {'no' if None in commits else 'different'} git commits")
    models = []
    for r, config in zip(runs, configs):
        s = read_summary(study / r["run_dir"])
        budget = r.get("budget") or (s.get("budget") or {}).get("budget_s")  # older studies: in the summary only
        fields = {k: s[k] for k in ("test_accuracy", "best_val_accuracy", "precision", "steps", "train_seconds",
                                    "budget_error", "map_50") if s.get(k) is not None}
        models.append(_as_recorded({"model": r["model"], "seed": r["seed"], **({"budget": budget} if budget else {}),
                                    **fields, "batch_size": config["config"]["batch_size"]}))
    versions = configs[0].get("versions", {})
    row = {"name": name, "variant": variant, "command": command,
           "precision": " / ".join(sorted({m["precision"] for m in models})), "date": date.today().isoformat(),
           "commit": commits.pop(), "machine": this_machine(read_summary(study / runs[0]["run_dir"])["device"]),
           "software": {k: versions[k] for k in ("torch", "python") if k in versions},
           "runs": [{"whole_command_seconds": seconds}], "models": models,
           "source": "bench/new_result.py --study: the study's results.json and its runs' summary.json and "
                     "config.json; whole-command seconds as measured around the command"}
    return _write(row, folder)


def _write(row: dict, folder: Path) -> Path:
    """Check `row` and write it to folder/<date>-<machine>-<name>[-<variant>].json, never over another file."""
    check(row, "the new results file")
    words = (row["date"], row["machine"]["gpu"] or row["machine"]["cpu"], row["name"], row["variant"] or "")
    path = folder / ("-".join(re.sub(r"[^a-z0-9]+", "-", w.lower()).strip("-") for w in words if w) + ".json")
    if path.exists():
        raise ResultError(f"{path} exists; give another --variant, or remove it first")
    write_bytes(path, (json.dumps(row, indent=2, ensure_ascii=False) + "\n").encode())
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="the row's name: cnn, 'cnn, long recipe', vit, alexnet, vgg16, frcnn")
    p.add_argument("--command", required=True, help="the command as run, {seed} where each run's seed goes")
    p.add_argument("--seconds", required=True, help="whole-command seconds, one per run folder, comma-separated")
    p.add_argument("--variant", help="e.g. 'AVX2-only emulation', 'precision auto' (the README shows no variant)")
    p.add_argument("--study", action="store_true", help="one study folder (of `mnistbench compare`) instead of runs")
    p.add_argument("run_dirs", nargs="+", help="the run folders, one per seed (or the study folder, with --study)")
    args = p.parse_args(argv)
    try:
        seconds = [float(s) for s in args.seconds.split(",")]
        path = study_result(args.name, args.command, seconds[0], Path(args.run_dirs[0]), args.variant) \
            if args.study else new_result(args.name, args.command, seconds, args.run_dirs, args.variant)
    except ValueError:
        print(f"bench/new_result.py: --seconds {args.seconds!r}: expected numbers separated by commas", file=sys.stderr)
        return 2
    except (ResultError, UserError) as e:
        print(f"bench/new_result.py: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}; now run: python bench/results.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
