"""A real uvicorn server on a loopback port, in a thread (LiveServer) or as a `vaegan serve`
process (start_serve), for the HTTP tests and benchmarks."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """The app under the same uvicorn configuration `vaegan serve` uses (timeouts, connection cap)."""

    def __init__(self, app, cfg=None):
        import uvicorn

        from vaegan.config import ServeConfig
        from vaegan.runtime.server import uvicorn_config

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn_config(app, "127.0.0.1", self.port, cfg or ServeConfig(), log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_serve(art_dir, *args: str, timeout: float = 60.0, stderr=subprocess.PIPE):
    """`python -m vaegan serve ART_DIR --port P *args` in a process; returns (process, url) once
    /healthz answers, or kills it and raises with what it printed."""
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaegan", "serve", str(art_dir), "--port", str(port), *args],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise RuntimeError(f"vaegan serve did not start: {err}")
        time.sleep(0.1)
