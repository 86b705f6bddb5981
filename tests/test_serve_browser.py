"""The draw-a-digit page in a real browser: Debian's Chromium (no browser download) driven by Playwright, against
`python -m mnistbench serve` in its own process, stopped at the end with Ctrl-C (SIGINT)."""
from __future__ import annotations

import base64
import io
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import encode, fresh_run
from PIL import Image
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package (.ci/run installs it)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
SEVEN = [(0.22, 0.2), (0.75, 0.2), (0.45, 0.85)]   # one stroke, in fractions of the pad
BAR = [(0.3, 0.52), (0.7, 0.52)]                   # a stray stroke across it


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_cnn):
    """(URL, process): the trained CNN and an untrained detector (every box shown: --min-score 0) served by
    the command line on a free port; the URL read from its first line."""
    folder = tmp_path_factory.mktemp("browser")
    runs = [trained_cnn, fresh_run(folder / "frcnn", "frcnn")]
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "mnistbench", "serve", *map(str, runs), "--port", "0",
                             "--min-score", "0", "--device", "cpu"], stdout=subprocess.PIPE, stderr=log, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    first = lines.get(timeout=180)
    url = re.search(r"on (http://127\.0\.0\.1:\d+/)", first)
    assert url, first
    print(f"\n{first.strip()}")
    yield url.group(1), proc, lines
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} expected (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def open_page(browser, url: str, **context):
    """A page of the app, ready; with the list of every URL it requested and every script error."""
    page = browser.new_context(**context).new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and page.errors.append(m.text))  # an answered 400 is logged as a failed load: expected
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    return page


def replied(page, n: int) -> None:
    """Wait until the page has shown its n-th reply."""
    page.wait_for_selector(f'body[data-replies="{n}"]', state="attached", timeout=30_000)


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the pad, in fractions of its size."""
    box = page.locator("#draw").bounding_box()
    for stroke in strokes:
        (x, y), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


def answers(page) -> dict[str, dict]:
    """Every model's answer as the page shows it, by run."""
    out = {}
    for card in page.locator(".model").all():
        bars = [(li.get_attribute("data-class"), float(li.get_attribute("data-p")))
                for li in card.locator(".bars li").all()]
        reads = card.locator(".reads")
        out[card.get_attribute("data-run")] = {"label": card.locator(".label").inner_text(), "bars": bars,
                                               "ms": card.locator(".ms").inner_text(),
                                               "reads": reads.inner_text() if reads.count() else None}
    return out


def pixels(locator) -> np.ndarray:
    """What an element shows, as grey pixels."""
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("L"))


def drawing(page) -> np.ndarray:
    """The pad canvas's own pixels, as grey: without the detector's boxes drawn over it on another canvas."""
    url = page.evaluate("document.getElementById('draw').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L"))


def test_draw_a_digit_with_the_mouse(served, browser, tmp_path):
    url = served[0]
    page = open_page(browser, url, viewport={"width": 1200, "height": 800})
    assert [c.get_attribute("data-run") for c in page.locator(".model").all()] == ["shared-cnn", "frcnn"]
    draw(page, [SEVEN])
    replied(page, 1)
    got = answers(page)
    cnn, detector = got["shared-cnn"], got["frcnn"]
    assert cnn["label"] == "7" and cnn["bars"][0] == ("7", max(p for _, p in cnn["bars"])), got
    assert len(cnn["bars"]) == 3 and cnn["bars"][0][1] > 0.5 and re.fullmatch(r"\d+\.\d ms", cnn["ms"])
    assert re.fullmatch(r"\d+\.\d ms", detector["ms"]) and detector["reads"]
    assert "Answered in" in page.inner_text("#status")
    seen = pixels(page.locator("#seen"))
    assert seen.max() > 200 and seen.min() < 30  # the 28 x 28 input, shown beside the pad
    shot = tmp_path / "serve.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    one_stroke = drawing(page)
    draw(page, [BAR])
    replied(page, 2)
    assert np.mean(np.abs(drawing(page).astype(int) - one_stroke) > 60) > 0.02
    page.click("#undo")  # back to the 7 alone: asked again
    replied(page, 3)
    assert answers(page)["shared-cnn"]["label"] == "7"
    undone = np.abs(drawing(page).astype(int) - one_stroke)
    assert np.mean(undone > 60) < 0.002  # the bar is gone (stroke edges antialias a little differently)
    page.click("#clear")
    assert answers(page)["shared-cnn"] == {"label": "–", "bars": [], "ms": "", "reads": None}
    assert pixels(page.locator("#draw"))[12:-12, 12:-12].max() < 10  # black (inside the rounded corners)
    assert all(u.startswith(url) for u in page.requests) and not page.errors, (page.requests, page.errors)


def test_open_or_drop_an_image(served, browser, test_set, tmp_path):
    """Real test digits as dark ink on paper through the file picker and the drop zone; a file that is not an
    image is one clear message, and the page goes on working."""
    url, (x, y) = served[0], test_set
    page = open_page(browser, url, viewport={"width": 1200, "height": 800})
    for n, i in enumerate((1, 2, 3), start=1):
        photo = encode(255 - np.asarray(Image.fromarray(x[i]).resize((160, 160))), "JPEG", quality=90)
        page.set_input_files("#file", files=[{"name": f"{i}.jpg", "mimeType": "image/jpeg", "buffer": photo}])
        replied(page, n)
        assert answers(page)["shared-cnn"]["label"] == str(y[i]), i
    page.set_input_files("#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"hello"}])
    replied(page, 4)
    assert "notes.png: not an image" in page.inner_text("#status") and page.locator("#status.error").count() == 1
    digit = encode(255 - np.asarray(Image.fromarray(x[4]).resize((200, 200))))
    drop = page.evaluate_handle("""bytes => { const t = new DataTransfer();
        t.items.add(new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"})); return t; }""",
                                list(digit))
    page.dispatch_event("#pad", "drop", {"dataTransfer": drop})
    replied(page, 5)
    assert answers(page)["shared-cnn"]["label"] == str(y[4]) and "error" not in page.get_attribute("#status", "class")
    assert all(u.startswith(url) for u in page.requests) and not page.errors, (page.requests, page.errors)


def test_a_phone_draws_with_a_finger(served, browser, tmp_path):
    """390 x 844, touch: the layout fits the screen and a finger's stroke is answered."""
    url = served[0]
    page = open_page(browser, url, viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True,
                     device_scale_factor=2)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    for part in ("#draw", "#seen", ".model", "#clear"):
        box = page.locator(part).first.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, part
    box = page.locator("#draw").bounding_box()
    cdp = page.context.new_cdp_session(page)
    touches = [("touchStart", SEVEN[0]), *[("touchMove", p) for p in SEVEN[1:]], ("touchEnd", (None, None))]
    for kind, (fx, fy) in touches:
        points = [] if fx is None else [{"x": box["x"] + fx * box["width"], "y": box["y"] + fy * box["height"]}]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})
    replied(page, 1)
    assert answers(page)["shared-cnn"]["label"] == "7"
    page.screenshot(path=str(tmp_path / "serve-phone.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'serve-phone.png'}")


def test_ctrl_c_stops_the_server_cleanly(served):
    url, proc, lines = served
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert lines.get(timeout=5).strip() == "mnistbench serve: stopped by SIGINT"
