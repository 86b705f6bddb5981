"""The picture of `mnistbench serve` in docs/serve.md: the page with every model's answer to a digit drawn with
the mouse.

    python bench/serve_screenshot.py RUN_OR_STUDY_DIR [...] [--digit 4] [--out docs/serve.png]

starts `python -m mnistbench serve` on a free port, opens the page in Debian's Chromium through Playwright (no
browser download; pip install playwright), draws the digit in mouse strokes, waits for the answers and saves a
1200 x 620 screenshot. Needs the `serve` extra.
"""
from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
from pathlib import Path

from report_pictures import CHROMIUM_FLAGS, DOCS, chromium

WINDOW = (1200, 620)
STROKES = {  # a digit as mouse strokes, in fractions of the pad
    "2": [[(0.28, 0.32), (0.34, 0.2), (0.5, 0.15), (0.66, 0.2), (0.71, 0.33), (0.63, 0.48), (0.42, 0.66),
           (0.26, 0.83), (0.5, 0.82), (0.77, 0.82)]],
    "4": [[(0.6, 0.15), (0.25, 0.6), (0.78, 0.6)], [(0.6, 0.15), (0.6, 0.88)]],
    "7": [[(0.22, 0.2), (0.75, 0.2), (0.45, 0.85)]],
}


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the pad."""
    box = page.locator("#draw").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * box["width"], box["y"] + stroke[0][1] * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=10)
        page.mouse.up()


def shoot(url: str, strokes: list, out: Path, browser: str) -> None:
    """Open the page at `url`, draw `strokes`, wait for the answers, save the screenshot to `out`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=list(CHROMIUM_FLAGS))
        page = b.new_page(viewport={"width": WINDOW[0], "height": WINDOW[1]})
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        for n, stroke in enumerate(strokes, start=1):
            draw(page, [stroke])
            page.wait_for_selector(f'body[data-replies="{n}"]', state="attached", timeout=60_000)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        labels = page.locator(".model .label").all_inner_texts()
        b.close()
    print(f"{out}: the models read {', '.join(labels)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", help="run or study folders to serve")
    p.add_argument("--digit", choices=sorted(STROKES), default="4", help="the digit drawn (default 4)")
    p.add_argument("--out", type=Path, default=DOCS / "serve.png")
    args = p.parse_args(argv)
    browser = chromium()
    if browser is None:
        print("no chromium found; apt-get install chromium", file=sys.stderr)
        return 2
    server = subprocess.Popen([sys.executable, "-m", "mnistbench", "serve", *args.dirs, "--port", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        found = re.search(r"on (http://\S+/)", first)
        if not found:
            print(f"the server did not start: {first.strip() or 'no output'}", file=sys.stderr)
            return 1
        shoot(found.group(1), STROKES[args.digit], args.out, browser)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
