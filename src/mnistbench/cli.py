"""The command line: a thin layer that parses, validates and calls the library."""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

from . import cli_runs
from .errors import EXIT_IO, EXIT_USER, WRITE_FAULTS, UserError, WriteError, os_error_in

EPILOG = ("Any other config field: --set key=value (repeatable). `mnistbench config --model M` prints every "
          "value a run would use and where it comes from.")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one model, evaluate it on the test set, write a run folder",
                       epilog=EPILOG)
    p.add_argument("--model", help="registered model name (see `mnistbench models`), or a model file: "
                   "path/to/file.py:NAME (docs/own-model.md)")
    p.add_argument("--dataset", help="mnist or fashion-mnist")
    p.add_argument("--data-dir", dest="data_dir", help="folder holding mnist/ and fashion-mnist/")
    p.add_argument("--out", help="the run folder (default runs/<timestamp>-<model>)")
    p.add_argument("--epochs", help="training epochs (may be fractional: 1.5)")
    p.add_argument("--batch-size", dest="batch_size", help="training batch size")
    p.add_argument("--lr", help="peak learning rate")
    p.add_argument("--device", help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda or mps")
    p.add_argument("--seed", help="seed for the split, initialisation, order and augmentation")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config field or model option")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bar")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnistbench", description="Train, evaluate and compare models on "
                                     "MNIST-like data, fast and honestly.")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    p = sub.add_parser("evaluate", help="re-evaluate a run's saved model on the test set")
    p.add_argument("run_dir")
    p.add_argument("--data-dir", dest="data_dir", default="")
    p.add_argument("--device", default="auto")
    sub.add_parser("models", help="list the built-in and installed models: parameters, options, default recipes")
    _config_parser(sub)
    _compare_parsers(sub)
    cli_runs.add_parsers(sub)
    for name in ("train", "evaluate", "predict", "export", "serve"):  # the commands that load a run folder
        sub.choices[name].add_argument("--trust-code", dest="trust_code", action="store_true", help="run the run "
                                       "folder's copy of its model file (model_source.py) though its hash is not "
                                       "in your list of trusted code; read it first")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from .config import parse_sets

    flags = ("model", "dataset", "data_dir", "out", "epochs", "batch_size", "lr", "device", "seed", "quiet")
    out = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    out.update(parse_sets(args.sets))
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from .config import resolve
    from .engine import Interrupted
    from .run import resume_config, train

    overrides = _overrides(args)
    cfg = resume_config(args.resume, overrides, trust_code=args.trust_code) if args.resume else resolve(overrides)
    try:
        s = train(cfg, resume_from=args.resume)
    except Interrupted as e:
        if cfg.checkpoints:
            print(f"\nmnistbench: stopped by {e}; checkpoint saved. Resume with: "
                  f"mnistbench train --resume {e.run_dir}", file=sys.stderr)
        else:
            print(f"\nmnistbench: stopped by {e}; checkpoints=false: `mnistbench train --resume {e.run_dir}` "
                  "starts it again from its saved config", file=sys.stderr)
        return e.code
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line for the run, not one per process
        print(f"{s['model']} on {s['dataset']}: test accuracy {100 * s['test_accuracy']:.2f} %, "
              f"macro-F1 {s['test_macro_f1']:.4f}, training {s['train_seconds']:.1f} s "
              f"({epochs_text(s['epochs_completed'])}, {s['precision']}), run folder {s['run_dir']}")
    return 0


def epochs_text(epochs: float) -> str:
    """'1 epoch', '1.5 epochs', '2.35 epochs': at most two decimals (summary.json has four)."""
    n = f"{epochs:.2f}".rstrip("0").rstrip(".")
    return f"{n} epoch" + ("" if n == "1" else "s")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .run import evaluate_run

    m = evaluate_run(args.run_dir, data_dir=args.data_dir, device=args.device, trust_code=args.trust_code)
    shown = {k: v for k, v in m.items() if not isinstance(v, (list, dict))}
    print(json.dumps(shown, indent=2))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models import get_spec, list_models, no_download_options

    for name in list_models():
        spec = get_spec(name)  # an installed model that cannot be loaded: one line saying why
        try:
            import torch
            with torch.device("meta"):
                params = sum(p.numel() for p in spec.build(**no_download_options(name)).parameters())
            size = f"{params / 1e6:.2f} M params"
        except Exception as e:  # noqa: BLE001 - listing must not fail on one model
            size = f"params unknown ({type(e).__name__})"
        print(f"{name:10s} {size:>16s}  {spec.about}")
        print(f"{'':10s} options: {json.dumps(spec.arg_defaults(), default=str)}")
        print(f"{'':10s} default recipe: {json.dumps(dict(spec.recipes['default']))}")
        if spec.source != "built-in":
            print(f"{'':10s} from: {spec.source}")
    print("A model file: --model path/to/file.py:NAME (docs/own-model.md).")
    return 0


# --- config (what a run would use, and why) -----------------------------------------------------------
def _config_parser(sub) -> None:
    p = sub.add_parser("config", help="print a model's resolved config by section, each value with its source",
                       epilog="Sources, lowest first: default < recipe < preset < flag.")
    p.add_argument("--model", help="registered model name (default cnn)")
    p.add_argument("--preset", help="a study preset (quick, standard, notebook), as `compare --preset` gives it")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field or model option, as `train --set` takes it")


def cmd_config(args: argparse.Namespace) -> int:
    from .config import parse_sets
    from .study.presets import explain

    flags = {"model": args.model} if args.model else {}
    print("\n".join(explain(args.preset, {**flags, **parse_sets(args.sets)})))
    return 0


# --- compare and report (the whole study) ---------------------------------------------------------
def _compare_parsers(sub) -> None:
    p = sub.add_parser("compare", help="train every model x seed under one preset, then write the study report",
                       epilog="Rerunning the same command resumes: finished runs are skipped, failed ones retried.")
    p.add_argument("--models", help="comma-separated model names or model files path/to/file.py:NAME (default: "
                   "every built-in and installed model)")
    p.add_argument("--preset", default="quick", help="quick (an equal CPU budget per model), standard or notebook")
    p.add_argument("--seeds", type=int, default=1, help="seeds per model (mean ± std in the report)")
    p.add_argument("--budget", type=float, help="seconds of training per run, the same for every model")
    p.add_argument("--budgets", help="comma-separated budgets in seconds: every model trains at each one, and "
                   "the report draws accuracy against budget")
    p.add_argument("--budget-flops", dest="budget_flops", type=float,
                   help="training FLOPs per run (3 x forward FLOPs per sample x samples), the same for every model "
                   "and on every machine")
    p.add_argument("--budgets-flops", dest="budgets_flops", help="comma-separated budgets in training FLOPs")
    p.add_argument("--reuse-finished", dest="reuse_finished", action="store_true",
                   help="keep finished runs made by another version or commit of mnistbench (the report names "
                   "them) instead of running them again")
    p.add_argument("--out", help="the study folder (default runs/compare-<preset>)")
    p.add_argument("--data-dir", dest="data_dir", default="", help="folder holding mnist/ and fashion-mnist/")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--executor", default="local",
                   help="local: each run in its own process, one after another (default); inline: all in this "
                   "process; ray: each run a Ray task, on this machine or a Ray cluster (mnistbench[ray]); "
                   "slurm: one Slurm job-array task per run, through submitit (mnistbench[slurm])")
    p.add_argument("--address", help="--executor ray: the Ray cluster to join (auto: the one `ray start` "
                   "made); default: join one if this machine has it, else start Ray here")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="config field or model option for every model that takes it")
    p.add_argument("--quiet", action="store_true", help="no per-run progress bars")
    p = sub.add_parser("report", help="rebuild a study's results and report from its finished runs")
    p.add_argument("dir", help="the study folder (the --out of compare)")


def _budgets(one: float | None, many: str | None, flag: str, example: str) -> list[float]:
    """The budgets of `--budget X` or `--budgets A,B,C` (or their FLOPs twins, named by `flag`)."""

    if one is not None and many:
        raise UserError(f"{flag} and {flag}s: give one of them")
    if one is not None:
        return [one]
    try:
        return [float(b) for b in many.split(",") if b.strip()] if many else []
    except ValueError:
        raise UserError(f"{flag}s {many!r}: expected numbers separated by commas, e.g. {example}") from None


def cmd_compare(args: argparse.Namespace) -> int:
    from .config import parse_sets
    from .study.compare import StudyInterrupted, compare, failed_runs

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        rows = compare(models, preset=args.preset, seeds=args.seeds,
                       budgets=_budgets(args.budget, args.budgets, "--budget", "30,60,120"),
                       budgets_flops=_budgets(args.budget_flops, args.budgets_flops, "--budget-flops", "1e13,5e13"),
                       out=args.out, data_dir=args.data_dir, device=args.device, overrides=parse_sets(args.sets),
                       quiet=args.quiet, executor=args.executor, address=args.address,
                       reuse_finished=args.reuse_finished)
    except StudyInterrupted as e:
        print(f"\nmnistbench: {e}", file=sys.stderr)
        return e.code
    failed = failed_runs(rows)
    if failed:
        print(f"mnistbench: {len(failed)} of {len(rows)} runs failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .study.about import progress
    from .study.report import REPORT_HTML, rebuild

    analysis = rebuild(args.dir)
    print(f"{progress(analysis)}; report: {args.dir}/{REPORT_HTML}")  # "k of N planned runs finished"
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "models": cmd_models, "config": cmd_config,
            "compare": cmd_compare, "report": cmd_report, **cli_runs.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mnistbench` console script and `python -m mnistbench`."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        return _told(args, str(e), EXIT_USER)
    except WriteError as e:  # disk full, read-only, permission, quota: which file, what is intact, how to go on
        return _told(args, e.told(), EXIT_IO)
    except (OSError, RuntimeError) as e:  # any other I/O failure; torch's writer raises RuntimeError for one
        cause = os_error_in(e)
        if cause is None or not (isinstance(e, OSError) or cause.errno in WRITE_FAULTS):
            raise
        return _told(args, f"{cause.strerror or cause}: {cause.filename or ''}".rstrip(": "), EXIT_IO)
    except KeyboardInterrupt:
        print("\nmnistbench: interrupted", file=sys.stderr)
        return 130


def _told(args: argparse.Namespace, line: str, code: int) -> int:
    """One line on stderr (and the traceback first with --debug); returns the exit status."""
    if args.debug:
        traceback.print_exc()
    print(f"mnistbench: error: {line}", file=sys.stderr)
    return code
