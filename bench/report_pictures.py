"""Pictures of a study report for docs/report.md: the top of report.html as a browser shows it, and the
accuracy-against-budget figure.

    python bench/report_pictures.py STUDY_DIR [--out docs]

writes docs/report-top.png (headless Chromium, a 1400 × 1000 window) and docs/accuracy-vs-budget.png
(copied from the study's figures/, present when the study has two or more budgets).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mnistbench.study.document import FIGURES
from mnistbench.study.report import BUDGET_FIGURE, REPORT_HTML

DOCS = Path(__file__).resolve().parents[1] / "docs"
WINDOW = (1400, 1000)
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def chromium() -> str | None:
    """The Chromium binary: /usr/bin/chromium (Debian's package) or one on PATH."""
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: Path, out: Path, browser: str, window: tuple[int, int] = WINDOW) -> None:
    """The top `window` of `page` (a local HTML file) as a PNG, rendered by headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "shot.png"
        proc = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/user",
                               f"--window-size={window[0]},{window[1]}", f"--screenshot={shot}",
                               page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
        if not shot.exists() or shot.read_bytes()[:4] != b"\x89PNG":
            raise SystemExit(f"chromium made no screenshot (exit {proc.returncode}): {proc.stderr[-1500:]}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study", type=Path, help="a study folder (the --out of mnistbench compare) with report.html")
    p.add_argument("--out", type=Path, default=DOCS, help="where the pictures go (default: the repository's docs/)")
    args = p.parse_args(argv)
    page = args.study / REPORT_HTML
    if not page.exists():
        print(f"{page} does not exist; run `mnistbench report {args.study}` first", file=sys.stderr)
        return 2
    browser = chromium()
    if browser is None:
        print("no Chromium found (apt-get install chromium); the report picture is not made", file=sys.stderr)
        return 2
    screenshot(page, args.out / "report-top.png", browser)
    print(f"wrote {args.out / 'report-top.png'}")
    figure = args.study / FIGURES / BUDGET_FIGURE
    if figure.exists():
        shutil.copyfile(figure, args.out / "accuracy-vs-budget.png")
        print(f"wrote {args.out / 'accuracy-vs-budget.png'}")
    else:
        print(f"{figure} does not exist: the study has fewer than two budgets (compare --budgets 30,60,...)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
