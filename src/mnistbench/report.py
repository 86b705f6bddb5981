"""The study report: rows read from run folders, results.csv/json, report.md, a self-contained report.html."""
from __future__ import annotations

import base64
import csv
import html
import io
import itertools
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import UserError
from .fsio import write_bytes, write_json

RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
FIGURES = "figures"  # the PNGs report.md links to (report.html embeds the same bytes)

# One row per model and seed, in study order. The last five columns label slices and schedules.
COLUMNS = ("model", "seed", "status", "error", "test_accuracy", "test_macro_f1", "test_loss", "train_seconds",
           "time_to_99", "train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
           "params", "flops_per_image", "peak_memory_mb", "device", "pretrained", "map_50", "preset", "run_dir",
           "epochs", "train_images", "test_images", "train_limit", "test_limit")
NUMERIC = ("test_accuracy", "test_macro_f1", "test_loss", "train_seconds", "time_to_99", "train_images_per_second",
           "inference_ms_per_image", "inference_images_per_second", "params", "flops_per_image", "peak_memory_mb",
           "map_50")
MISTAKES_SHOWN = 16


# --- rows ------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e})") from None


def run_row(study: Path, run_dir: str, *, preset: str) -> dict[str, Any]:
    """The result row of a finished run, read from its folder (`run_dir` relative to the study folder)."""
    folder = Path(study) / run_dir
    s = _read_json(folder / "summary.json")
    cfg = _read_json(folder / "config.json")["config"]
    cm = s.get("confusion_matrix")
    return {
        "model": cfg["model"], "seed": cfg["seed"], "status": "ok", "error": "",
        **{k: s.get(k) for k in ("test_accuracy", "test_macro_f1", "test_loss", "train_seconds")},
        "time_to_99": (s.get("time_to_accuracy") or {}).get("0.99"),
        **{k: s.get(k) for k in ("train_images_per_second", "inference_ms_per_image", "inference_images_per_second",
                                 "params", "flops_per_image", "peak_memory_mb", "device")},
        "pretrained": s.get("weights_source") is not None,
        "map_50": s.get("map_50"), "preset": preset, "run_dir": run_dir,
        "epochs": s.get("epochs_completed", cfg["epochs"]), "train_images": s.get("train_images"),
        "test_images": sum(map(sum, cm)) if cm else s.get("test_images"),
        "train_limit": cfg.get("train_limit"), "test_limit": cfg.get("test_limit"),
    }


def failed_row(model: str, seed: int, *, preset: str, run_dir: str, error: str) -> dict[str, Any]:
    """The row of a run that raised: its one-line reason and no numbers."""
    row = dict.fromkeys(COLUMNS)
    row.update(model=model, seed=seed, status="failed", error=error, preset=preset, run_dir=run_dir)
    return row


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def write_results(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Atomically rewrite results.json (study settings, rows, per-model aggregates) and results.csv."""
    write_json(Path(study) / RESULTS_JSON, {"study": meta, "columns": list(COLUMNS), "rows": rows,
                                            "models": aggregate(rows)})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_csv_value(r.get(c)) for c in COLUMNS])
    write_bytes(Path(study) / RESULTS_CSV, buf.getvalue().encode())


def read_results(study: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(study settings, rows) of results.json; without it, rows of every finished run under runs/."""
    study = Path(study)
    path = study / RESULTS_JSON
    if path.exists():
        doc = _read_json(path)
        return doc.get("study", {}), doc.get("rows", [])
    finished = sorted((study / "runs").glob("*/summary.json"))
    if not finished:
        raise UserError(f"{study} holds no {RESULTS_JSON} and no finished runs; is it a `mnistbench compare` folder?")
    rows = [run_row(study, str(p.parent.relative_to(study)), preset="") for p in finished]
    return {"preset": "", "seeds": sorted({r["seed"] for r in rows})}, rows


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, over its finished seeds: mean and sample std of every numeric column; most accurate first."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r)
    out = []
    for model, rs in by_model.items():
        ok = [r for r in rs if r["status"] == "ok"]
        a: dict[str, Any] = {"model": model, "runs": len(rs), "ok": len(ok), "seeds": [r["seed"] for r in ok]}
        for c in NUMERIC:
            vals = [float(r[c]) for r in ok if r.get(c) is not None]
            a[c] = statistics.fmean(vals) if vals else None
            a[f"{c}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
            a[f"{c}_n"] = len(vals)
        a["pretrained"] = any(r["pretrained"] for r in ok)
        a["device"] = ok[0]["device"] if ok else None
        a["errors"] = [f"seed {r['seed']}: {r['error']}" for r in rs if r["status"] != "ok"]
        out.append(a)
    return sorted(out, key=lambda a: (a["test_accuracy"] is None, -(a["test_accuracy"] or 0.0)))


def pareto_models(aggs: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """For each model with accuracy and time: the models that dominate it (faster or as fast, and more
    accurate or as accurate, better in one); an empty list means it is on the Pareto front."""
    pts = [a for a in aggs if a["test_accuracy"] is not None and a["train_seconds"] is not None]
    return {p["model"]: [q["model"] for q in pts if q is not p
                         and q["train_seconds"] <= p["train_seconds"] and q["test_accuracy"] >= p["test_accuracy"]
                         and (q["train_seconds"] < p["train_seconds"] or q["test_accuracy"] > p["test_accuracy"])]
            for p in pts}


# --- formatting ------------------------------------------------------------------------------------
def _si(x: float) -> str:
    for div, unit in ((1e9, " G"), (1e6, " M"), (1e3, " K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _secs(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


FORMATS = {
    "test_accuracy": lambda x: f"{100 * x:.2f}", "test_macro_f1": lambda x: f"{x:.4f}",
    "test_loss": lambda x: f"{x:.4f}", "train_seconds": _secs, "time_to_99": _secs,
    "train_images_per_second": lambda x: f"{x:,.0f}", "inference_ms_per_image": lambda x: f"{x:.3g}",
    "inference_images_per_second": lambda x: f"{x:,.0f}", "params": _si, "flops_per_image": _si,
    "peak_memory_mb": lambda x: f"{x:,.0f}", "map_50": lambda x: f"{x:.3f}",
}


def cell(a: dict[str, Any], col: str) -> str:
    """An aggregate's column as 'mean ± std' (std only with several seeds); '–' when unknown."""
    v = a.get(col)
    if v is None:
        return "–"
    f = FORMATS[col]
    std = a.get(f"{col}_std")
    text = f(v) if not std else f"{f(v)} ± {f(std)}"  # no "± 0" for what seeds do not change (parameters)
    n = a.get(f"{col}_n", a["ok"])
    return text if n == a["ok"] else f"{text} ({n}/{a['ok']} seeds)"


def _ratio(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _names(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --- the document: one list of blocks, rendered to Markdown and to HTML --------------------------------
class Doc:
    """Headings, paragraphs, bullet lists, tables and figures, in order."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Iterable[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(headers), [list(map(str, r)) for r in rows]))

    def figure(self, name: str, data: bytes, caption: str) -> None:
        self.blocks.append(("figure", name, data, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {item}" for item in b[1]))
            elif b[0] == "table":
                def row(cells): return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
                out.append("\n".join([row(b[1]), row(["---"] * len(b[1])), *map(row, b[2])]))
            elif b[0] == "figure":
                out.append(f"![{b[3]}]({FIGURES}/{b[1]})\n\n*{b[3]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{_inline(c)}</th>" for c in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in b[2])
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                            "</table></div>")
            elif b[0] == "figure":
                src = "data:image/png;base64," + base64.b64encode(b[2]).decode()
                body.append(f'<figure><img src="{src}" alt="{html.escape(b[3])}">'
                            f"<figcaption>{_inline(b[3])}</figcaption></figure>")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
                + "\n".join(body) + "\n</body></html>\n")


CSS = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;"
       "padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}"
       ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85em;margin:1em 0}"
       "th,td{border:1px solid #ccc;padding:.3em .55em;text-align:right;white-space:nowrap}"
       "th{background:#f3f3f3}td:first-child,th:first-child,td:nth-child(2){text-align:left}"
       "tbody tr:nth-child(even){background:#fafafa}figure{margin:1em 0}img{max-width:100%;height:auto}"
       "figcaption{font-size:.85em;color:#555}code{background:#f3f3f3;padding:0 .25em}")


def _inline(text: str) -> str:
    """HTML of one line of our Markdown subset: `code` and **bold**."""
    out, code = [], False
    for i, part in enumerate(html.escape(text).split("`")):
        if i:
            code = not code
        if code:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{s}</b>" if j % 2 else s for j, s in enumerate(bold)))
    return "".join(out)


# --- reading the runs ------------------------------------------------------------------------------
def _representatives(study: Path, rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model, its finished run with the lowest seed: row, summary, config and metrics records."""
    out: dict[str, dict[str, Any]] = {}
    for r in sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["seed"]):
        if r["model"] not in out:
            folder = study / r["run_dir"]
            out[r["model"]] = {"row": r, "folder": folder, "summary": _read_json(folder / "summary.json"),
                               "config": _read_json(folder / "config.json")["config"]}
    return out


def _metrics(folder: Path) -> list[dict[str, Any]]:
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _classes(dataset: str) -> tuple[str, ...]:
    from .data.datasets import DATASETS
    return DATASETS[dataset].classes if dataset in DATASETS else tuple(str(i) for i in range(10))


def _test_images(rep: dict[str, Any]):
    """The test images of a representative run's data set, or the reason they cannot be loaded."""
    from .data.datasets import load_arrays

    try:
        return load_arrays(rep["summary"]["dataset"], rep["config"].get("data_dir") or None,
                           allow_download=False)[2], None
    except (UserError, OSError) as e:
        return None, str(e)


def error_sets(reps: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[int, int]], int]:
    """Per classifier, {test index: predicted class} of its errors among the first `n` test images, and `n`.

    Summaries list only the first errors (by index) of a model with many, so the comparison covers the
    test images up to where every model's list is complete.
    """
    lists, n = {}, None
    for model, rep in reps.items():
        s = rep["summary"]
        mis = s.get("misclassified")
        if mis is None or not s.get("confusion_matrix"):
            continue
        total = rep["row"]["test_images"]
        complete = len(mis) >= s.get("misclassified_count", len(mis))
        covered = total if complete or not mis else mis[-1]["index"] + 1
        n = covered if n is None else min(n, covered)
        lists[model] = {m["index"]: m["pred"] for m in mis}
    if n is None:
        return {}, 0
    return {m: {i: p for i, p in errs.items() if i < n} for m, errs in lists.items()}, n


# --- findings --------------------------------------------------------------------------------------
def findings(meta: dict[str, Any], rows: Sequence[dict[str, Any]], aggs: Sequence[dict[str, Any]],
             reps: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences computed from the rows and runs: nothing here is fixed text about a particular model."""
    out: list[str] = []
    done = [a for a in aggs if a["test_accuracy"] is not None]
    several = any(a["ok"] > 1 for a in done)
    spread = " (mean over seeds)" if several else ""
    if not done:
        out.append("No model finished, so there is nothing to compare yet; the failures are listed below.")
    if done:
        best = done[0]
        text = f"**{best['model']}** is the most accurate: {_pct(best['test_accuracy'])} test accuracy{spread}"
        if len(done) > 1:
            second = done[1]
            gap = 100 * (best["test_accuracy"] - second["test_accuracy"])
            text += f", {gap:.2f} points ahead of {second['model']} ({_pct(second['test_accuracy'])})"
            stds = (best["test_accuracy_std"] or 0.0) + (second["test_accuracy_std"] or 0.0)
            if several and stds and gap / 100 <= stds:
                text += ", a gap within their seed-to-seed spread"
        if len(done) > 2:
            worst = done[-1]
            text += f"; {worst['model']} is the least accurate ({_pct(worst['test_accuracy'])})"
        out.append(text + ".")
    reached = sorted((a for a in done if a["time_to_99"] is not None), key=lambda a: a["time_to_99"])
    never = [a["model"] for a in done if a["time_to_99"] is None]
    if reached:
        a = reached[0]
        text = (f"**{a['model']}** reached 99 % validation accuracy fastest: after {_secs(a['time_to_99'])} s of "
                f"training (checked at epoch ends)")
        if len(reached) > 1:
            text += "; then " + ", ".join(f"{b['model']} ({_secs(b['time_to_99'])} s)" for b in reached[1:])
        if never:
            text += f"; {_names(never)} never reached it in this preset's schedule"
        out.append(text + ".")
    elif done:
        top = max(done, key=lambda a: a["test_accuracy"])
        out.append(f"No model reached 99 % validation accuracy within this preset's schedule; the best test "
                   f"accuracy is {_pct(top['test_accuracy'])} ({top['model']}).")
    timed = [a for a in done if a["train_seconds"]]
    if len(timed) > 1:
        rate = max(timed, key=lambda a: a["test_accuracy"] / a["train_seconds"])
        slow = max(timed, key=lambda a: a["train_seconds"])
        longer = _ratio(slow["train_seconds"] / rate["train_seconds"])
        out.append(f"Per second of training, **{rate['model']}** gives the most accuracy "
                   f"({_pct(rate['test_accuracy'])} in {_secs(rate['train_seconds'])} s); {slow['model']} trained "
                   f"longest ({_secs(slow['train_seconds'])} s, {longer}× as long) for {_pct(slow['test_accuracy'])}.")
        dominated = pareto_models(timed)
        seconds = {a["model"]: a["train_seconds"] for a in timed}
        front = sorted((m for m, by in dominated.items() if not by), key=seconds.get)
        text = f"On the Pareto front of accuracy against training time: {_names(front)}"
        losers = [(m, by) for m, by in dominated.items() if by]
        if losers:
            text += "; " + "; ".join(f"{m} is both slower and less accurate than {_names(by)}" for m, by in losers)
        out.append(text + ".")
    sized = [a for a in done if a["params"]]
    if len(sized) > 1:
        big, small = max(sized, key=lambda a: a["params"]), min(sized, key=lambda a: a["params"])
        def flops(a):
            return f" and {_si(a['flops_per_image'])}FLOPs per image" if a["flops_per_image"] else ""
        out.append(f"Largest: {big['model']} with {_si(big['params'])} parameters{flops(big)}; smallest: "
                   f"{small['model']} with {_si(small['params'])}{flops(small)}, "
                   f"{_ratio(big['params'] / small['params'])}× fewer parameters.")
    lat = [a for a in done if a["inference_ms_per_image"]]
    thr = [a for a in done if a["inference_images_per_second"]]
    if len(lat) > 1 and len(thr) > 1:
        fast = min(lat, key=lambda a: a["inference_ms_per_image"])
        bulk = max(thr, key=lambda a: a["inference_images_per_second"])
        out.append(f"Fastest single-image inference: {fast['model']} ({fast['inference_ms_per_image']:.3g} ms per "
                   f"image); highest large-batch throughput: {bulk['model']} "
                   f"({bulk['inference_images_per_second']:,.0f} images/s).")
    out += _class_findings(reps)
    out += _disagreement_findings(reps)
    for a in aggs:
        if a["map_50"] is not None:
            rep = reps.get(a["model"], {}).get("summary", {})
            extra = f", mAP@[.5:.95] {rep['map']:.3f}" if rep.get("map") is not None else ""
            none = rep.get("no_detection_count")
            out.append(f"**{a['model']}** finds digits in scenes with mAP@0.5 {a['map_50']:.3f}{extra}"
                       + (f"; {none} test images got no detection at all." if none is not None else "."))
    for r in rows:
        if r["status"] != "ok":
            out.append(f"**{r['model']}** (seed {r['seed']}) failed: {r['error']}")
    return out


def _class_findings(reps: dict[str, dict[str, Any]]) -> list[str]:
    worst: dict[str, list[str]] = {}
    names = None
    for model, rep in reps.items():
        per = rep["summary"].get("per_class")
        if not per:
            continue
        names = _classes(rep["summary"]["dataset"])
        c = min(per, key=lambda p: p["f1"])
        worst.setdefault(names[c["class"]], []).append(f"{model} (F1 {c['f1']:.3f})")
    if not worst or names is None:
        return []
    n = sum(map(len, worst.values()))
    cls, models = max(worst.items(), key=lambda kv: len(kv[1]))
    if n > 1 and len(models) == 1:
        return ["The hardest class (lowest per-class F1) differs by model: "
                + "; ".join(f"{c} for {_names(ms)}" for c, ms in worst.items()) + "."]
    who = f"all {n} models" if len(models) == n else f"{len(models)} of {n} models"
    text = f"Class {cls} is the hardest (lowest per-class F1) for {who}: {_names(models)}"
    others = [f"{c} for {_names(ms)}" for c, ms in worst.items() if c != cls]
    return [text + (f"; the hardest class is {'; '.join(others)}" if others else "") + "."]


def _disagreement_findings(reps: dict[str, dict[str, Any]]) -> list[str]:
    errs, n = error_sets(reps)
    if len(errs) < 2 or not n:
        return []
    models = list(errs)
    where = f"Among the first {n} test images" if n < max(reps[m]["row"]["test_images"] for m in models) \
        else f"Among the {n} test images"
    counts = Counter(i for e in errs.values() for i in e)
    out = []
    if counts:
        k = max(counts.values())
        hardest = sorted(i for i, c in counts.items() if c == k)
        examples = ", ".join(f"#{i}" for i in hardest[:5])
        who = "both" if k == len(models) == 2 else f"all {k}" if k == len(models) else f"{k} of {len(models)}"
        out.append(f"{where}, {len(hardest)} are misclassified by {who} models (e.g. {examples}); "
                   f"{sum(1 for c in counts.values() if c == 1)} are missed by only one model.")
    pairs = []
    for a, b in itertools.combinations(models, 2):
        union = set(errs[a]) | set(errs[b])
        shared = set(errs[a]) & set(errs[b])
        same = sum(1 for i in shared if errs[a][i] == errs[b][i])
        pairs.append((len(shared) / len(union) if union else 0.0, a, b, len(shared), same))
    pairs.sort(reverse=True)
    j, a, b, shared, same = pairs[0]
    text = (f"{a} and {b} make the most similar mistakes: {shared} shared errors, {100 * j:.0f} % of the "
            f"images either gets wrong ({same} of them with the same wrong label)")
    if len(pairs) > 1:
        j2, c, d, shared2, _ = pairs[-1]
        text += f"; {c} and {d} overlap least ({shared2} shared, {100 * j2:.0f} %)"
    out.append(text + ".")
    return out


# --- the report ------------------------------------------------------------------------------------
LEADERBOARD = (("test accuracy (%)", "test_accuracy"), ("macro-F1", "test_macro_f1"), ("test loss", "test_loss"),
               ("training (s)", "train_seconds"), ("time to 99 % (s)", "time_to_99"),
               ("train images/s", "train_images_per_second"),
               ("inference ms/image (batch 1)", "inference_ms_per_image"),
               ("inference images/s (large batch)", "inference_images_per_second"), ("parameters", "params"),
               ("FLOPs/image", "flops_per_image"), ("peak memory (MB)", "peak_memory_mb"))


def leaderboard(aggs: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the leaderboard: finished models by mean test accuracy."""
    cols = list(LEADERBOARD) + ([("mAP@0.5", "map_50")] if any(a["map_50"] is not None for a in aggs) else [])
    front = {m for m, by in pareto_models(aggs).items() if not by}
    headers = ["#", "model", "runs ok"] + [h for h, _ in cols] + ["pretrained", "Pareto", "device"]
    rows = []
    for i, a in enumerate(a for a in aggs if a["test_accuracy"] is not None or a["map_50"] is not None):
        rows.append([str(i + 1), a["model"], f"{a['ok']}/{a['runs']}"] + [cell(a, c) for _, c in cols]
                    + ["yes" if a["pretrained"] else "no", "★" if a["model"] in front else "", a["device"] or "–"])
    return headers, rows


def _settings_table(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    seen, out = set(), []
    plan = meta.get("plan", {})
    for r in rows:
        if r["model"] in seen:
            continue
        seen.add(r["model"])
        ok = next((x for x in rows if x["model"] == r["model"] and x["status"] == "ok"), r)
        over = plan.get(r["model"], {})
        out.append([r["model"], ", ".join(f"{k}={v}" for k, v in over.items()) or "(none)",
                    "–" if ok["epochs"] is None else str(ok["epochs"]),
                    "–" if ok["train_images"] is None else f"{ok['train_images']:,}",
                    "–" if ok["test_images"] is None else f"{ok['test_images']:,}",
                    "–" if ok["status"] != "ok" else ("yes" if ok["pretrained"] else "no")])
    return ["model", "preset and --set overrides", "epochs", "training images", "test images", "pretrained"], out


def _about(meta: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Sentences that label the study: preset, seeds, slices, pretrained weights, device."""
    ok = [r for r in rows if r["status"] == "ok"]
    preset = meta.get("preset") or "unknown"
    out = [f"Preset **{preset}**" + (f": {meta['preset_about']}." if meta.get("preset_about") else ".")]
    seeds = sorted({r["seed"] for r in rows})
    out.append(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} per model ({', '.join(map(str, seeds))}): "
               "every model gets the same data split and seeds"
               + ("; tables show mean ± sample standard deviation over seeds." if len(seeds) > 1 else "."))
    sliced = sorted({(r["model"], r["train_images"]) for r in ok if r["train_limit"]})
    full = sorted({r["model"] for r in ok if not r["train_limit"]})
    if sliced:
        text = "Training data is sliced (train_limit): " + ", ".join(f"{m} {n:,} images" for m, n in sliced)
        verb = "trains" if len(full) == 1 else "train"
        out.append(text + (f"; {_names(full)} {verb} on the full training split." if full else "."))
    test_sliced = sorted({(r["model"], r["test_images"]) for r in ok if r["test_limit"]})
    if test_sliced:
        out.append("The test set is sliced (test_limit, the first images): "
                   + ", ".join(f"{m} {n:,} images" for m, n in test_sliced) + "; compare those models' numbers "
                   "with care.")
    elif ok:
        out.append(f"Every model is tested on all {max(r['test_images'] or 0 for r in ok):,} test images.")
    pre = sorted({r["model"] for r in ok if r["pretrained"]})
    out.append(f"Started from pretrained weights: {_names(pre)}." if pre else
               "No model started from pretrained weights.")
    devices = sorted({r["device"] for r in ok if r["device"]})
    if devices:
        out.append(f"Device: {', '.join(devices)}.")
    if meta.get("command"):
        out.append(f"Reproduce (finished runs are skipped): `{meta['command']}`")
    return out


def build_report(study: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Write figures/, report.md and report.html for the study folder; returns the HTML path."""
    from . import report_figures as figs

    study = Path(study)
    aggs = aggregate(rows)
    reps = _representatives(study, rows)
    dataset = next((r["summary"]["dataset"] for r in reps.values()), meta.get("dataset", "mnist"))
    classes = _classes(dataset)
    models = list(dict.fromkeys(r["model"] for r in rows))  # study order
    doc = Doc()
    title = f"mnistbench study: {', '.join(models)} on {dataset}"
    doc.h(1, title)
    doc.p(" ".join(_about(meta, rows)))
    doc.h(2, "What this run shows")
    doc.bullets(findings(meta, rows, aggs, reps))
    doc.h(2, "Leaderboard")
    doc.table(*leaderboard(aggs))
    doc.p("Test accuracy, macro-F1 and loss on the test set with the best-validation weights; training seconds "
          "count training steps only; time to 99 % is the training time at the first epoch end with 99 % "
          "validation accuracy; FLOPs are counted by torch.utils.flop_counter for one 28×28 image; ★ marks the "
          "Pareto front of accuracy against training time.")
    doc.h(2, "Settings per model")
    doc.table(*_settings_table(meta, rows))

    if reps:
        doc.h(2, "Training curves")
        runs = [(r["model"], r["seed"], _metrics(study / r["run_dir"])) for r in rows if r["status"] == "ok"]
        doc.figure("curves.png", figs.curves(runs, models), "Every run overlaid: training loss against step and "
                   "against training seconds, validation accuracy against training seconds.")
        timed = [a for a in aggs if a["test_accuracy"] is not None and a["train_seconds"]]
        if timed:
            dominated = pareto_models(timed)
            points = [{"model": a["model"], "seconds": a["train_seconds"], "accuracy": a["test_accuracy"],
                       "seconds_std": a["train_seconds_std"], "accuracy_std": a["test_accuracy_std"],
                       "front": not dominated[a["model"]]} for a in timed]
            doc.h(2, "Accuracy against training time")
            doc.figure("pareto.png", figs.pareto(points, models), "Test accuracy against training seconds "
                       "(mean ± std over seeds); stars and the dashed line: the Pareto front.")
        cms = [(f"{m} (seed {rep['row']['seed']}): {_pct(rep['summary']['test_accuracy'])}",
                rep["summary"]["confusion_matrix"]) for m, rep in reps.items()
               if rep["summary"].get("confusion_matrix") and rep["summary"].get("test_accuracy") is not None]
        if cms:
            doc.h(2, "Confusion matrices")
            doc.figure("confusions.png", figs.confusions(cms, classes), "Confusion matrices (rows: true class, "
                       "columns: predicted; numbers: errors; log colour scale).")
        f1 = _mean_f1(rows, study, len(classes))
        if f1:
            doc.h(2, "Per-class F1")
            doc.figure("per_class_f1.png", figs.per_class_f1(f1, classes), "Per-class F1 on the test set"
                       + (" (mean over seeds)." if any(a["ok"] > 1 for a in aggs) else "."))
        _mistakes_section(doc, reps, classes)
        for m, rep in reps.items():
            path = rep["folder"] / "detections.png"
            if path.exists():
                doc.h(2, f"Detector scenes: {m}")
                doc.figure(f"detections-{m}.png", path.read_bytes(), f"{m} (seed {rep['row']['seed']}): "
                           "detections on test scenes, from its run folder.")
    doc.h(2, "All runs")
    doc.table(["model", "seed", "status", "test accuracy (%)", "training (s)", "time to 99 % (s)", "run folder",
               "error"],
              [[r["model"], str(r["seed"]), r["status"],
                "–" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}",
                "–" if r["train_seconds"] is None else _secs(r["train_seconds"]),
                "–" if r["time_to_99"] is None else _secs(r["time_to_99"]), r["run_dir"], r["error"] or ""]
               for r in rows])
    doc.p(f"Every number above is in `{RESULTS_CSV}` and `{RESULTS_JSON}`; each run folder holds its config, "
          "metrics, summary, weights and figures. `mnistbench report DIR` rebuilds this report from the run folders.")

    fig_dir = study / FIGURES
    fig_dir.mkdir(exist_ok=True)
    for b in doc.blocks:
        if b[0] == "figure":
            write_bytes(fig_dir / b[1], b[2])
    write_bytes(study / REPORT_MD, doc.markdown().encode())
    write_bytes(study / REPORT_HTML, doc.html(title).encode())
    return study / REPORT_HTML


def _mean_f1(rows: Sequence[dict[str, Any]], study: Path, n_classes: int) -> dict[str, list[float]]:
    per_model: dict[str, list[list[float]]] = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        per = _read_json(study / r["run_dir"] / "summary.json").get("per_class")
        if per and len(per) == n_classes:
            per_model.setdefault(r["model"], []).append([p["f1"] for p in per])
    return {m: [statistics.fmean(c) for c in zip(*v)] for m, v in per_model.items()}


def _mistakes_section(doc: Doc, reps: dict[str, dict[str, Any]], classes: Sequence[str]) -> None:
    from . import report_figures as figs

    wrong = {m: rep for m, rep in reps.items() if rep["summary"].get("misclassified") is not None
             and rep["summary"].get("confusion_matrix")}
    if not wrong:
        return
    doc.h(2, "Test digits the models get wrong")
    images, reason = _test_images(next(iter(wrong.values())))
    if images is None:
        doc.p(f"The test images could not be loaded, so the image grids are left out: {reason}")
        return
    rows = []
    for m, rep in wrong.items():
        mis = rep["summary"]["misclassified"][:MISTAKES_SHOWN]
        total = rep["summary"].get("misclassified_count", len(mis))
        rows.append((f"{m} (seed {rep['row']['seed']}): {total} wrong, first {len(mis)} shown",
                     [(images[e["index"]], f"{classes[e['true']][:5]}→{classes[e['pred']][:5]}") for e in mis]))
    doc.figure("mistakes.png", figs.image_rows(rows, MISTAKES_SHOWN),
               "Misclassified test digits per model, in test-set order; captions: true→predicted.")
    errs, n = error_sets(wrong)
    if len(errs) < 2:
        return
    counts = Counter(i for e in errs.values() for i in e)
    hardest = sorted(counts, key=lambda i: (-counts[i], i))[:MISTAKES_SHOWN]
    truth = {e["index"]: e["true"] for rep in wrong.values() for e in rep["summary"]["misclassified"]}
    doc.figure("hardest.png", figs.image_rows([(f"the test digits most models get wrong (of the first {n})",
                                                [(images[i], f"#{i} {classes[truth[i]][:5]}: {counts[i]}/{len(errs)}")
                                                 for i in hardest])], MISTAKES_SHOWN),
               "Test digits wrong for the most models; captions: index, true class, how many models miss it.")
    models = list(errs)
    doc.p(f"Shared errors between models among the first {n} test images (diagonal: each model's own errors):")
    doc.table(["model"] + models, [[a] + [str(len(set(errs[a]) & set(errs[b]))) for b in models] for a in models])


def rebuild(study: str | Path) -> list[dict[str, Any]]:
    """`mnistbench report DIR`: re-read every finished run, rewrite results.csv/json and the report."""
    study = Path(study)
    if not study.is_dir():
        raise UserError(f"{study} is not a folder; pass the --out folder of `mnistbench compare`")
    meta, old = read_results(study)
    rows = []
    for r in old:
        if r["status"] == "ok" and not (study / r["run_dir"] / "summary.json").exists():
            r = failed_row(r["model"], r["seed"], preset=r["preset"], run_dir=r["run_dir"],
                           error=f"{r['run_dir']}/summary.json has gone missing since the run finished")
        elif r["status"] == "ok":
            r = run_row(study, r["run_dir"], preset=r["preset"])
        rows.append(r)
    write_results(study, meta, rows)
    build_report(study, meta, rows)
    return rows
