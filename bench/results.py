"""The measured results: bench/results/*.json, rendered into README.md and docs/BENCHMARKS.md.

    python bench/results.py            # rewrite the generated tables (between the marker comments)
    python bench/results.py --check    # exit 1, naming each file whose tables are out of date

One JSON file is one measurement: one command on one machine at one commit, for one or more seeds.
Its fields (FIELDS, RUN_FIELDS) and how the tables read them are described in docs/BENCHMARKS.md.
Nothing is typed into the tables by hand: to add a row, drop a file into bench/results/ (written by hand, or
by bench/new_result.py from run folders) and run this.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README, BENCHMARKS = ROOT / "README.md", ROOT / "docs" / "BENCHMARKS.md"
ORDER = ["cnn", "cnn, long recipe", "vit", "alexnet", "vgg16", "frcnn", "quick study"]  # others after, by name
FIELDS = {"name", "variant", "command", "precision", "date", "commit", "recorded_at", "machine", "software", "runs",
          "models", "source", "note"}
REQUIRED = {"name", "command", "precision", "date", "machine", "software", "runs", "source"}
RUN_FIELDS = {"seed", "test_accuracy", "test_accuracy_single_view", "test_macro_f1", "best_val_accuracy", "map_50",
              "map", "train_seconds", "whole_command_seconds", "precision_step_ms", "commit", "recorded_at"}
# result-neutral parts of a command that the tables leave out (the JSON keeps the command as it ran)
HIDDEN = re.compile(r"\s+(--data-dir \S+|--set quiet=true|--quiet|--set seed=\{seed\}|--seed \{seed\})(?=\s|$)")


class ResultError(Exception):
    """A results file that cannot be rendered; the message names the file and the field."""


def load(folder: Path = RESULTS) -> list[dict]:
    """Every results file, checked, with its file name under '_file'."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            row = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ResultError(f"{path.name}: not valid JSON ({e})") from None
        check(row, path.name)
        rows.append({**row, "_file": path.name})
    return rows


def check(row: dict, where: str) -> None:
    """Raise ResultError unless `row` has what a table row needs."""
    if not isinstance(row, dict):
        raise ResultError(f"{where}: expected a JSON object")
    missing, unknown = REQUIRED - row.keys(), row.keys() - FIELDS
    if missing or unknown:
        raise ResultError(f"{where}: " + "; ".join(filter(None, [
            missing and f"missing {', '.join(sorted(missing))}", unknown and f"unknown {', '.join(sorted(unknown))}"])))
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(row["date"])):
        raise ResultError(f"{where}: date {row['date']!r} is not YYYY-MM-DD")
    machine = row["machine"]
    if not isinstance(machine, dict) or not (machine.get("gpu") or (machine.get("cpu")
                                                                   and isinstance(machine.get("flags"), list))):
        raise ResultError(f"{where}: machine must name a GPU, or a CPU model and its flags (a list)")
    if not isinstance(row["software"], dict) or not row["software"].get("torch"):
        raise ResultError(f"{where}: software must give the torch version")
    if not isinstance(row["runs"], list) or not row["runs"]:
        raise ResultError(f"{where}: runs must be a non-empty list")
    for i, run in enumerate(row["runs"]):
        if not isinstance(run, dict) or run.keys() - RUN_FIELDS or "whole_command_seconds" not in run:
            raise ResultError(f"{where}: runs[{i}] needs whole_command_seconds and only the fields "
                              f"{', '.join(sorted(RUN_FIELDS))}")
        ids = [c for c in (run.get("commit"), run.get("recorded_at"), row.get("commit"), row.get("recorded_at")) if c]
        if not ids:
            raise ResultError(f"{where}: runs[{i}] has no commit (give commit, or recorded_at when the run's "
                              "own commit is not known)")
        if not all(re.fullmatch(r"[0-9a-f]{7,40}", str(c)) for c in ids):
            raise ResultError(f"{where}: runs[{i}]: a commit is not a git hash: {', '.join(map(str, ids))}")
        if run["whole_command_seconds"] is None and "models" not in row:
            raise ResultError(f"{where}: runs[{i}]: only a study (with models) may leave whole_command_seconds null")
        if "models" not in row and "test_accuracy" not in run:
            raise ResultError(f"{where}: runs[{i}] has no test_accuracy (only a study, with models, may omit it)")


# --- cells ------------------------------------------------------------------------------------------------
def number(x: float) -> str:
    """A measured number as it was recorded: never rounded here."""
    return f"{x:,}"  # Python writes a float's shortest exact form: 9.0, 1,351.6, 0.988


def pct(x: float | Decimal) -> str:
    """A fraction as a percentage with two decimals, computed in decimal (0.99205 -> 99.21, not 99.20)."""
    d = x if isinstance(x, Decimal) else Decimal(repr(x))
    return str((100 * d).quantize(Decimal("0.01"), ROUND_HALF_UP))


def mean_ap(x: float) -> str:
    return f"{x:.3f}"


def spread(values: list[float], unit: str) -> str:
    """'9.0 s' when all runs agree, else 'lowest–highest s'."""
    lo, hi = min(values), max(values)
    return f"{number(lo)} {unit}" if lo == hi else f"{number(lo)}–{number(hi)} {unit}"


def seeds(runs: list[dict]) -> str:
    known = [r["seed"] for r in runs if r.get("seed") is not None]
    if len(known) < len(runs):
        return f"{len(runs)} run" + ("s" if len(runs) > 1 else "") + ", seed not recorded"
    return ("seed " if len(known) == 1 else "seeds ") + ", ".join(str(s) for s in known)


def accuracy(runs: list[dict]) -> str:
    """Mean test accuracy and the range over the runs (a detector's is classification by detection)."""
    acc = [r["test_accuracy"] for r in runs if "test_accuracy" in r]
    if not acc:
        return "—"
    kind = " by detection" if any("map_50" in r for r in runs) else ""
    if len(acc) == 1:
        return f"{pct(acc[0])} %{kind} ({seeds(runs)})"
    average = sum(Decimal(repr(a)) for a in acc) / len(acc)
    return f"{pct(average)} %{kind} ({pct(min(acc))}–{pct(max(acc))}; {seeds(runs)})"


def sentence(text: str) -> str:
    return text.rstrip(".") + "."


def command(row: dict) -> str:
    return "`" + HIDDEN.sub("", row["command"]) + "`"


def machine(row: dict) -> str:
    m = row["machine"]
    if m.get("gpu"):
        return m["gpu"]
    flags = f" ({' '.join(m['flags'])})" if m.get("flags") else ""
    return (f"{m['cpu']}, {m['cores']} cores" if m.get("cores") else m["cpu"]) + flags


def commit(row: dict) -> str:
    """The run's commit, or 'recorded at X' where only the commit that wrote the figure down is known."""
    ids = {"run": [], "recorded at": []}
    for run in row["runs"]:
        own = run.get("commit") or (None if run.get("recorded_at") else row.get("commit"))
        kind, c = ("run", own) if own else ("recorded at", run.get("recorded_at") or row["recorded_at"])
        if c[:7] not in ids[kind]:
            ids[kind].append(c[:7])
    return "; ".join(f"{'' if kind == 'run' else kind + ' '}{' / '.join(c)}" for kind, c in ids.items() if c)


def per_run(runs: list[dict], key: str, fmt=pct, unit: str = "") -> str:
    values = [r.get(key) for r in runs]
    if all(v is None for v in values):
        return ""
    return " / ".join("?" if v is None else fmt(v) for v in values) + unit


# --- tables -----------------------------------------------------------------------------------------------
def _order(name: str) -> tuple:
    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def front_page(rows: list[dict]) -> list[dict]:
    """Per name, the newest measurement of the plain command (no variant); all of them when several share a date."""
    plain = [r for r in rows if not r.get("variant")]
    newest = {r["name"]: max(p["date"] for p in plain if p["name"] == r["name"]) for r in plain}
    return sorted((r for r in plain if r["date"] == newest[r["name"]]), key=lambda r: (_order(r["name"]), r["_file"]))


def readme_table(rows: list[dict]) -> str:
    lines = ["| model | test accuracy: mean (range; seeds) | whole command | precision | CPU | commit | command |",
             "|---|---|---|---|---|---|---|"]
    for r in front_page(rows):
        whole = spread([run["whole_command_seconds"] for run in r["runs"]], "s")
        lines.append(f"| {r['name']} | {accuracy(r['runs'])} | {whole} | {r['precision']} | {machine(r)} | "
                     f"{commit(r)}, {r['date']} | {command(r)} |")
    return "\n".join(lines)


def table(header: list[str], cells: list[list[str]]) -> list[str]:
    """A Markdown table without the columns that no row fills."""
    keep = [i for i in range(len(header)) if i == 0 or any(row[i] for row in cells)]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(values[i] for i in keep) + " |"

    return [line(header), "|" + "---|" * len(keep), *map(line, cells)]


def machine_key(row: dict) -> tuple:
    m, s = row["machine"], row["software"]
    return (m.get("gpu") or "", m.get("cpu", ""), tuple(m.get("flags", ())), s.get("torch", ""), s.get("python", ""))


def machine_heading(row: dict) -> str:
    m, s = row["machine"], row["software"]
    parts = [m["gpu"]] if m.get("gpu") else [m["cpu"]]
    parts += [f"{m['cores']} cores"] if m.get("cores") else []
    parts += [f"{m['memory_gib']} GiB"] if m.get("memory_gib") else []
    parts += ["flags " + ", ".join(m["flags"])] if m.get("flags") else []
    return f"### {', '.join(parts)}; {', '.join(f'{k} {v}' for k, v in s.items())}"


def train_cells(r: dict) -> list[str]:
    runs = r["runs"]
    acc = per_run(runs, "test_accuracy")
    if any("test_accuracy_single_view" in run for run in runs):
        acc += f" ({per_run(runs, 'test_accuracy_single_view')})"
    if any("map_50" in run for run in runs):
        acc += f" by detection; mAP@0.5 {per_run(runs, 'map_50', mean_ap)}"
    steps = [run["precision_step_ms"] for run in runs if "precision_step_ms" in run]
    precision = r["precision"] + "".join(f" ({number(ms['fp32'])} / {number(ms['bf16'])})" for ms in steps)
    return [command(r), r.get("variant") or "", precision, seeds(runs), acc, per_run(runs, "best_val_accuracy"),
            per_run(runs, "train_seconds", number), per_run(runs, "whole_command_seconds", number),
            f"{commit(r)}, {r['date']}"]


def machines_tables(rows: list[dict]) -> str:
    """One table per machine and software, newest first: every training command measured there."""
    out, groups = [], {}
    for r in rows:
        if "models" not in r:
            groups.setdefault(machine_key(r), []).append(r)
    header = ["command", "variant", "precision (fp32 / bf16 ms per step)", "seeds", "test accuracy, % (one view)",
              "validation, %",
              "training, s", "whole command, s", "commit, date"]
    for group in sorted(groups.values(), key=lambda g: (max(r["date"] for r in g), machine_key(g[0])), reverse=True):
        group.sort(key=lambda r: (_order(r["name"]), r.get("variant") or "", r["_file"]))
        out += ["", machine_heading(group[0]), "", *table(header, [train_cells(r) for r in group])]
        notes = [f"- {command(r)}{', ' + r['variant'] if r.get('variant') else ''}: {sentence(r['note'])}"
                 for r in group if r.get("note")]
        out += ["", *notes] if notes else []
    return "\n".join(out[1:])


def study_cells(m: dict) -> list[str]:
    acc = pct(m["test_accuracy"]) if "test_accuracy" in m else ""
    acc += f" by detection; mAP@0.5 {mean_ap(m['map_50'])}" if "map_50" in m else ""
    step = m.get("precision_step_ms")
    model = m["model"] + (f", seed {m['seed']}" if "seed" in m else "") + (f", {number(m['budget'])} s"
                                                                          if m.get("budget") else "")
    trained = number(m["train_seconds"]) if "train_seconds" in m else ""
    trained += f" ({100 * m['budget_error']:+.1f} %)" if "budget_error" in m else ""
    return [model, acc, pct(m["best_val_accuracy"]) if "best_val_accuracy" in m else "",
            m.get("precision", "") + (f" ({number(step['fp32'])} / {number(step['bf16'])})" if step else ""),
            f"{m['steps']:,} × {m['batch_size']}" if "steps" in m else "", trained]


def studies_tables(rows: list[dict]) -> str:
    """One table per study (a results file with models), newest first: its whole command, then each model."""
    out = []
    header = ["model", "test accuracy, %", "validation, %", "precision (fp32 / bf16 ms per step)", "steps × batch",
              "training, s (of the budget)"]
    for r in sorted((r for r in rows if "models" in r), key=lambda r: (r["date"], r["_file"]), reverse=True):
        note = f" {sentence(r['note'])[0].upper()}{sentence(r['note'])[1:]}" if r.get("note") else ""
        whole = r["runs"][0]["whole_command_seconds"]
        whole = f"{number(whole)} s whole command" if whole is not None else "whole command not timed"
        out += ["", f"**{command(r)}**, {r['precision']}: {whole}. {machine(r)}; {commit(r)}, {r['date']}.{note}", "",
                *table(header, [study_cells(m) for m in r["models"]])]
    return "\n".join(out[1:])


def budgets_table(rows: list[dict]) -> str:
    """Each study's realized training seconds per model against its budget, one column per study (oldest
    first): what the budget promised and what the runs trained."""
    studies = sorted((r for r in rows if any("budget" in m and "train_seconds" in m for m in r.get("models", []))),
                     key=lambda r: (r["date"], r["_file"]))
    models = sorted({m["model"] for r in studies for m in r["models"]}, key=_order)
    header = ["model", *(f"{machine(r)}; {commit(r)}" for r in studies)]

    def cell(r: dict, model: str) -> str:
        got = [m for m in r["models"] if m["model"] == model and "budget" in m and "train_seconds" in m]
        error = [m.get("budget_error", m["train_seconds"] / m["budget"] - 1) for m in got]
        return ", ".join(f"{number(m['train_seconds'])} of {m['budget']:g} ({100 * e:+.1f} %)"
                         for m, e in zip(got, error)) or "–"
    return "\n".join(table(header, [[m, *(cell(r, m) for r in studies)] for m in models]))


BLOCKS = {README: {"readme": readme_table},
          BENCHMARKS: {"machines": machines_tables, "studies": studies_tables, "budgets": budgets_table}}


def render(text: str, blocks: dict, rows: list[dict], where: str = "") -> str:
    """`text` with each generated block replaced by what the results files give now."""
    for name, make in blocks.items():
        begin, end = f"<!-- results:{name} begin", f"<!-- results:{name} end -->"
        pattern = re.compile(rf"({re.escape(begin)}[^\n]*-->\n).*?({re.escape(end)})", re.S)
        if not pattern.search(text):
            raise ResultError(f"{where}: no '{begin} ... -->' / '{end}' markers")
        text = pattern.sub(lambda m, make=make: m.group(1) + make(rows) + "\n" + m.group(2), text, count=1)
    return text


def stale(rows: list[dict] | None = None) -> dict[Path, str]:
    """The files whose generated tables differ from the results files, with their new text."""
    rows = load() if rows is None else rows
    new = {path: render(path.read_text(), blocks, rows, path.name) for path, blocks in BLOCKS.items()}
    return {path: text for path, text in new.items() if text != path.read_text()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only say whether the rendered tables are up to date")
    args = p.parse_args(argv)
    try:
        changed = stale()
    except (ResultError, OSError) as e:
        print(f"bench/results.py: {e}", file=sys.stderr)
        return 2
    for path, text in changed.items():
        if args.check:
            print(f"{path.relative_to(ROOT)}: tables out of date; run python bench/results.py", file=sys.stderr)
        else:
            path.write_text(text)
            print(f"rendered {path.relative_to(ROOT)}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
