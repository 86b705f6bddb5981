"""`mnistbench serve`'s JSON API on a real server over loopback: real test digits, bad requests, concurrency,
study folders with a fashion and a detector run, and the command line."""
from __future__ import annotations

import contextlib
import io
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from helpers import encode, fresh_run
from numerics import reduction_length, rounding_bound
from PIL import Image

from mnistbench.cli import _parser, main
from mnistbench.data import images
from mnistbench.data.pipeline import normalize
from mnistbench.fsio import write_json
from mnistbench.serve.app import MAX_BYTES, allowed_hosts, create_app
from mnistbench.serve.models import Models
from mnistbench.serve.server import listen
from mnistbench.study.rows import RESULTS_JSON

PNG = {"content-type": "image/png"}

EPS32 = float(np.finfo(np.float32).eps)
# the picture an answer shows: float32 ink (u8 / 255, within one rounding) rounded to 4 decimals (within 0.5e-4)
PICTURE_ROUNDING = 0.5e-4 + EPS32


def as_drawn(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A real test digit as a user sends one: white on black like the page's pad (PNG), or dark ink on paper
    (JPEG), upscaled."""
    side = int(rng.integers(140, 320))
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC))
    return encode(big) if rng.random() < 0.5 else encode(255 - big, "JPEG", quality=85)


# --- a real server on loopback --------------------------------------------------------------------
@contextlib.contextmanager
def serving(models: Models):
    """The base URL of `models` served by uvicorn in a thread, on a free loopback port."""
    sock = listen("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(create_app(models), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def server(trained_cnn):
    """(base URL, Models): the trained CNN on a real server."""
    models = Models.load([trained_cnn], device="cpu")
    with serving(models) as url:
        yield url, models


@pytest.fixture(scope="module")
def digits(test_set):
    """100 real test digits as files a user sends, with their labels."""
    x, y = test_set
    rng = np.random.default_rng(1)
    pick = rng.choice(len(x), 100, replace=False)
    return [as_drawn(x[i], rng) for i in pick], [str(y[i]) for i in pick]


@pytest.fixture(scope="module")
def sequential(server, digits):
    """Each digit's answer, asked one at a time."""
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        return [client.post("/api/predict", content=body, headers=PNG) for body in digits[0]]


def test_real_test_digits_are_read_through_the_api(sequential, digits):
    bodies, labels = digits
    assert all(r.status_code == 200 for r in sequential)
    answers = [r.json() for r in sequential]
    accuracy = np.mean([a["predictions"][0]["label"] == label for a, label in zip(answers, labels)])
    print(f"\n{100 * accuracy:.0f} % of 100 real test digits read right through POST /api/predict")
    assert accuracy >= 0.95
    for a, body in zip(answers[:10], bodies):
        (p,) = a["predictions"]
        assert p["model"] == "cnn" and p["run"] == "shared-cnn" and p["kind"] == "classify" and p["ms"] > 0
        # ten probabilities, each rounded to 6 decimals (at most 0.5e-6 off) from an fp32 softmax whose ten terms
        # add to 1 within 10 * eps
        assert len(p["probabilities"]) == 10 and abs(sum(p["probabilities"]) - 1) <= 10 * (0.5e-6 + EPS32)
        assert p["label"] == str(int(np.argmax(p["probabilities"])))
        # the same preprocessing as `mnistbench predict`: data.images, the MNIST recipe
        want = images.from_bytes(body, "mnist") / 255.0
        assert a["input_dataset"] == "mnist" and np.abs(np.array(a["input"]) - want).max() <= PICTURE_ROUNDING


def test_200_concurrent_requests_all_answer_right(server, digits, sequential):
    """Twice each digit, 16 at a time, from one bounded local client: every answer is the one the same image
    got alone (no state shared between requests), then the server is still healthy."""
    url, _ = server
    bodies = digits[0] * 2
    want = [r.json() for r in sequential] * 2

    def ask(body: bytes) -> tuple[httpx.Response, float]:
        start = time.perf_counter()
        r = client.post("/api/predict", content=body, headers=PNG)
        return r, time.perf_counter() - start

    limits = httpx.Limits(max_connections=16)
    with httpx.Client(base_url=url, timeout=60, limits=limits) as client, ThreadPoolExecutor(16) as pool:
        start = time.perf_counter()
        done = list(pool.map(ask, bodies))
        wall = time.perf_counter() - start
        assert client.get("/healthz").status_code == 200
    assert [r.status_code for r, _ in done] == [200] * 200
    # Alone or among 15 others, a request computes the same sums, perhaps split over threads in another order:
    # its logits within sqrt(K) * eps * max |logit| (K: the CNN's forward sums), a softmax probability within
    # twice that, and the 6-decimal rounding of the answer within one more unit (1e-6).
    net = server[1].served[0].predictor.model
    pictures = np.array([w["input"] for w in want[:100]])  # what the CNN saw, as u8 / 255
    seen = normalize(torch.from_numpy(np.round(pictures * 255).astype(np.uint8)))
    with torch.no_grad():
        scale = net(seen).abs().max().item()
    bound = 2 * rounding_bound(reduction_length(net, seen[:1], backward=False), scale) + 1e-6
    for (r, _), w in zip(done, want):
        got, expected = r.json()["predictions"][0], w["predictions"][0]
        assert got["label"] == expected["label"]
        assert np.abs(np.array(got["probabilities"]) - expected["probabilities"]).max() <= bound
        assert r.json()["input"] == w["input"]
    ms = sorted(1e3 * t for _, t in done)
    print(f"\n200 requests, 16 at a time: p50 {statistics.median(ms):.1f} ms, p99 {ms[197]:.1f} ms, "
          f"{200 / wall:.0f} requests/s")


def test_inference_does_not_block_the_event_loop(server, digits):
    """While a prediction waits for its model (its lock held here), the server still answers."""
    url, models = server
    lock = models.served[0].lock
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(1) as pool:
        with lock:
            pending = pool.submit(client.post, "/api/predict", content=digits[0][0], headers=PNG)
            time.sleep(0.3)
            start = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            assert client.get("/api/models").status_code == 200
            assert time.perf_counter() - start < 2 and not pending.done()
        assert pending.result(timeout=30).status_code == 200


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (5_000, 4_000)).save(buf, format="PNG")  # 20 M pixels in a few kB
    return buf.getvalue()


def _chunks(total: int):
    for _ in range(total // 65536 + 1):
        yield b"\0" * 65536  # no Content-Length: sent chunked, counted as it arrives


BAD = {  # name -> (request options, status, message)
    "not an image": ({"content": b"this is not an image", "headers": PNG}, 400, "not an image"),
    "truncated": ({"content": encode(np.eye(64, dtype=np.uint8) * 255)[:70], "headers": PNG}, 400, "truncated"),
    "blank": ({"content": encode(np.full((64, 64), 200, np.uint8)), "headers": PNG}, 400, "no ink found"),
    "empty": ({"content": b"", "headers": PNG}, 400, "empty body"),
    "over the pixel limit": ({"content": _bomb(), "headers": PNG}, 400,
                             f"5000×4000 = 20,000,000 pixels, over the limit of {images.SERVED_MAX_PIXELS:,}"),
    "too large": ({"content": b"\0" * (MAX_BYTES + 1), "headers": PNG}, 413, "over the limit of 5,000,000 bytes"),
    "too large, chunked": ({"content": _chunks(MAX_BYTES), "headers": PNG}, 413, "over the limit"),
    "text": ({"content": b"1", "headers": {"content-type": "text/plain"}}, 415, "Content-Type text/plain"),
    "a form": ({"files": {"f": ("a.png", b"x", "image/png")}}, 415, "multipart/form-data"),
    "no type": ({"content": b"x", "headers": {"content-type": ""}}, 415, "Content-Type missing"),
}


def test_bad_requests_are_json_errors_and_the_server_goes_on(server, digits):
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        for name, (options, status, needle) in BAD.items():
            r = client.post("/api/predict", **options)
            assert r.status_code == status, name
            assert needle in r.json()["error"], (name, r.json())
        for path in ("/nope", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/../pyproject.toml"):
            r = client.get(path)
            assert r.status_code == 404 and r.json() == {"error": "Not Found"}, path
        r = client.get("/api/predict")
        assert r.status_code == 405 and r.headers["allow"] == "POST" and "error" in r.json()
        r = client.get("/healthz", headers={"host": "attacker.example"})  # DNS rebinding
        assert r.status_code == 400 and "not served here" in r.json()["error"]
        # no CORS: a page of another origin can neither preflight nor read an answer
        r = client.options("/api/predict", headers={"origin": "https://elsewhere.example",
                                                    "access-control-request-method": "POST"})
        assert r.status_code == 405 and not any(h.startswith("access-control-") for h in r.headers)
        r = client.post("/api/predict", content=digits[0][0], headers={**PNG, "origin": "https://elsewhere.example"})
        assert r.status_code == 200 and not any(h.startswith("access-control-") for h in r.headers)
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01 GARBAGE / NOT-HTTP\r\n\r\n")  # not HTTP at all
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.post("/api/predict", content=digits[0][1], headers=PNG).status_code == 200


def test_the_page_and_the_models_list(server):
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert '<canvas id="draw"' in page.text
        for path, kind in (("/app.js", "text/javascript"), ("/style.css", "text/css")):
            r = client.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
            assert "http:" not in r.text and "https:" not in r.text and "@import" not in r.text, path
        assert "http:" not in page.text and "https:" not in page.text  # works offline: nothing from elsewhere
        doc = client.get("/api/models").json()
    assert doc["max_bytes"] == MAX_BYTES and doc["max_pixels"] == images.SERVED_MAX_PIXELS
    (m,) = doc["models"]
    assert m["model"] == "cnn" and m["dataset"] == "mnist" and m["kind"] == "classify"
    assert m["classes"] == [str(d) for d in range(10)] and m["test_accuracy"] > 0.95


# --- study folders, several data sets, a detector; the command line -------------------------------
def test_a_study_serves_its_finished_runs_each_with_its_own_recipe(tmp_path, trained_cnn, test_set):
    """cnn (MNIST), an untrained Fashion-MNIST cnn and an untrained detector from a study's results.json; its
    failed run is left out."""
    study, x, y = tmp_path / "study", *test_set
    (study / "runs").mkdir(parents=True)
    (study / "runs" / "cnn-seed0").symlink_to(trained_cnn)
    fresh_run(study / "runs" / "cnn-fashion", "cnn", dataset="fashion-mnist")
    fresh_run(study / "runs" / "frcnn-seed0", "frcnn")
    rows = [{"model": "cnn", "status": "ok", "run_dir": "runs/cnn-seed0"},
            {"model": "cnn", "status": "ok", "run_dir": "runs/cnn-fashion"},
            {"model": "vit", "status": "failed", "run_dir": "runs/vit-seed0"},
            {"model": "frcnn", "status": "ok", "run_dir": "runs/frcnn-seed0"}]
    write_json(study / RESULTS_JSON, {"study": {}, "rows": rows})
    body = encode(np.asarray(Image.fromarray(x[0]).resize((112, 112))))
    with serving(Models.load([study], device="cpu", min_score=0.0)) as url, httpx.Client(base_url=url) as client:
        listed = client.get("/api/models").json()["models"]
        answer = client.post("/api/predict", content=body, headers=PNG).json()
    assert [(m["run"], m["dataset"], m["kind"]) for m in listed] == [
        ("cnn-seed0", "mnist", "classify"), ("cnn-fashion", "fashion-mnist", "classify"),
        ("frcnn-seed0", "mnist", "detect")]
    assert listed[0]["test_accuracy"] > 0.95 and listed[1]["test_accuracy"] is None
    assert "Ankle boot" in listed[1]["classes"]
    digit, fashion, detector = answer["predictions"]
    assert digit["label"] == str(y[0]) and "input" not in digit  # it saw the top-level `input`
    assert answer["input_dataset"] == "mnist" and np.array(answer["input"]).shape == (28, 28)
    assert fashion["label"] in listed[1]["classes"] and len(fashion["probabilities"]) == 10
    want = images.from_bytes(body, "fashion-mnist") / 255.0
    assert np.abs(np.array(fashion["input"]) - want).max() <= PICTURE_ROUNDING  # its own recipe, and it says so
    assert detector["probabilities"] is None and np.array(detector["input"]).shape == (64, 64)
    found = detector["digits"]
    assert found and detector["label"] == str(max(found, key=lambda d: d["score"])["digit"])
    assert detector["text"] == "".join(str(d["digit"]) for d in found)
    assert all(0 <= d["box"][0] < d["box"][2] <= 112 and 0 <= d["box"][1] < d["box"][3] <= 112 for d in found)


def test_the_command_line(server, tmp_path, capsys):
    args = _parser().parse_args(["serve", "runs/x"])
    assert (args.host, args.port, args.max_bytes) == ("127.0.0.1", 8000, MAX_BYTES)
    assert args.max_pixels == images.SERVED_MAX_PIXELS
    assert allowed_hosts("0.0.0.0") == ["*"] and "127.0.0.2" in allowed_hosts("127.0.0.2")  # loopback: names
    busy = server[0].rsplit(":", 1)[1]
    for argv, needle in ((["serve", str(tmp_path / "missing")], "no such run or study folder"),
                         (["serve", str(tmp_path), "--port", "0"], "neither a run folder"),
                         (["serve", str(tmp_path), "--max-bytes", "0"], "--max-bytes must be at least 1"),
                         (["serve", str(tmp_path), "--port", busy], f"cannot listen on 127.0.0.1:{busy}")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("mnistbench: error: ") and needle in err and "\n" not in err, err


def test_runs_are_served_once_under_unique_names(tmp_path):
    a, b = fresh_run(tmp_path / "a" / "run", "cnn"), fresh_run(tmp_path / "b" / "run", "cnn")
    models = Models.load([a, b, a], device="cpu")
    assert [s.run for s in models.served] == ["run", "run-2"]
