"""`mnistbench serve`: load the runs, listen, print the URL, answer until Ctrl-C (uvicorn underneath)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from typing import TextIO

from ..errors import UserError
from ..predict import MIN_SCORE

HOST, PORT = "127.0.0.1", 8000


class Stopped(Exception):
    """SIGINT or SIGTERM reached the server, which has finished its open requests."""


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or one clear UserError."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(128)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") \
            from None
    return sock


def url(sock: socket.socket) -> str:
    """The page's address for a listening socket."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(paths: Iterable[str | os.PathLike], *, host: str = HOST, port: int = PORT, device: str = "auto",
          max_bytes: int | None = None, max_pixels: int | None = None, min_score: float = MIN_SCORE,
          out: TextIO | None = None, trust_code: bool = False) -> int:
    """Serve the page and the API for the runs named by `paths` (run or study folders) until SIGINT/SIGTERM;
    returns the exit status (0 after a clean stop)."""
    out = out or sys.stdout
    for name, value in (("--max-bytes", max_bytes), ("--max-pixels", max_pixels)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be at least 1; got {value}")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0..65535; got {port}")
    try:
        import uvicorn

        from .app import MAX_BYTES, create_app
    except ImportError as e:
        raise UserError(f"mnistbench serve needs {e.name}: pip install 'mnistbench[serve]'") from None
    from ..data.images import SERVED_MAX_PIXELS
    from .models import Models

    sock = listen(host, port)  # before loading: a port in use fails at once
    try:
        models = Models.load(paths, device=device, max_pixels=max_pixels or SERVED_MAX_PIXELS, min_score=min_score,
                             trust_code=trust_code)
        app = create_app(models, max_bytes=max_bytes or MAX_BYTES, host=host)
        names = ", ".join(f"{s.describe()['model']} ({s.run})" for s in models.served)
        print(f"mnistbench serve: {names} on {url(sock)}  (Ctrl-C stops)", file=out, flush=True)
        # limit_concurrency: past it, new connections get 503 instead of queueing without bound
        config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=5, limit_concurrency=200)
        with _stop_on_signals():
            uvicorn.Server(config).run(sockets=[sock])
    except Stopped as e:
        print(f"mnistbench serve: stopped by {e}", file=out, flush=True)
    finally:
        sock.close()
    return 0


@contextlib.contextmanager
def _stop_on_signals():
    """While active, SIGINT and SIGTERM raise Stopped. uvicorn takes both signals while it serves, shuts down
    gracefully, then raises the signal again, which lands here (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _raise_stopped(signum, frame):
    raise Stopped(signal.Signals(signum).name)
