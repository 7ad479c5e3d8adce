"""uvicorn with the connection limits a port on an edge box needs.

- A connection that has not sent a whole request head within --header-timeout is closed (uvicorn
  itself waits for it forever: 1000 trickling sockets once exhausted the file descriptors).
- At most --max-connections are open. At the cap, a new connection closes the oldest idle one (no
  request in progress) rather than being refused, so health probes and small requests still get in
  while idle sockets hold the cap; only when every connection is busy is the new one closed.
- Idle keep-alives are closed after --keep-alive; repeated connection errors are logged once per 10 s.

File descriptors: each connection holds one, so the process needs --max-connections plus about 64
(listening sockets, gRPC, model files, logs); `vaegan serve` raises its soft limit that far when the
hard limit allows and says so otherwise (docs/deploying.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from typing import Any

from vaegan.config import ServeConfig

log = logging.getLogger("vaegan.runtime.server")
FD_MARGIN = 64


def uvicorn_config(app: Any, host: str, port: int, cfg: ServeConfig, log_level: str = "info") -> Any:
    import uvicorn

    _rate_limit_logs()
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=_guarded_h11(cfg.header_timeout_s, cfg.max_connections),
        timeout_keep_alive=int(max(1, round(cfg.keep_alive_s))),
        timeout_graceful_shutdown=30,
    )


def _oldest_idle(conns: Any, newcomer: Any) -> Any | None:
    """The oldest open connection with no request in progress (none started yet, or the last one
    answered) and no bytes of a next one already waiting in the kernel; None when every one is busy.
    A probe's head usually arrives in the same event-loop pass as dozens of reconnecting idle
    sockets; reading the receive queue keeps it from being taken for one of them. The queue is read
    oldest first, only until an idle connection is found."""
    candidates = sorted(
        (
            c
            for c in conns
            if c is not newcomer
            and (c.cycle is None or c.cycle.response_complete)
            and not c.transport.is_closing()
        ),
        key=lambda c: getattr(c, "_opened", 0.0),
    )
    return next((c for c in candidates if _bytes_waiting(c) == 0), None)


def _bytes_waiting(conn: Any) -> int:
    """Unread bytes in the connection's socket receive queue (FIONREAD); 0 where it cannot be read."""
    sock = conn.transport.get_extra_info("socket")
    try:
        import fcntl
        import termios
    except ImportError:  # not on POSIX
        return 0
    if sock is None:
        return 0
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder, signed=True)


def _guarded_h11(header_timeout: float, max_connections: int) -> type:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        """uvicorn's h11 protocol, plus a deadline for the first request head and a connection cap."""

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._opened = time.monotonic()
            if len(self.connections) > max_connections:
                oldest = _oldest_idle(self.connections, self)
                if oldest is None:
                    log_limited(
                        "closed a connection: %d are open and busy (--max-connections)", max_connections
                    )
                    transport.close()
                    return
                log_limited(
                    "closed the oldest idle connection: %d are open (--max-connections)", max_connections
                )
                oldest.transport.close()
            self._head_deadline = self.loop.call_later(header_timeout, self._head_expired)

        def _head_expired(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                log_limited("closed a connection that sent no request head within %gs", header_timeout)
                self.transport.close()

        def send_400_response(self, msg: str) -> None:
            """A request h11 cannot parse (a negative Content-Length, a malformed head) answered in
            the API's own error format, {"error": ...}, not uvicorn's plain text."""
            import h11

            body = json.dumps({"error": "malformed HTTP request (check its Content-Length and headers)"})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            with contextlib.suppress(h11.LocalProtocolError):  # the head was already sent
                for event in (
                    h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                    h11.Data(data=body.encode()),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event))
            self.transport.close()

        def connection_lost(self, exc) -> None:
            deadline = getattr(self, "_head_deadline", None)
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

    return GuardedH11


def ensure_fd_budget(max_connections: int) -> str | None:
    """Raise the soft open-files limit to --max-connections + FD_MARGIN where the hard limit allows;
    returns a warning when it cannot (the cap would then fail with "Too many open files" first)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    need = max_connections + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            return (
                f"warning: the open-files limit is {target} but --max-connections {max_connections} needs about "
                f"{need}: lower --max-connections or raise `ulimit -n`"
            )
    return None


_last_logged: dict[str, float] = {}


def log_limited(msg: str, *args: Any) -> None:
    """A warning at most once per 10 s per message: under attack the log must not fill the disk."""
    now = time.monotonic()
    if now - _last_logged.get(msg, -1e9) >= 10.0:
        _last_logged[msg] = now
        log.warning(msg + " (said at most once per 10 s)", *args)


class _OncePer10s(logging.Filter):
    """Repeats of one message (an accept() failing with "Too many open files", say) pass once per
    10 s: under attack the log must not become the next thing to fill up."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        if now - _last_logged.get(key, -1e9) < 10.0:
            return False
        _last_logged[key] = now
        return True


def _rate_limit_logs() -> None:
    for name in ("uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OncePer10s) for f in logger.filters):
            logger.addFilter(_OncePer10s())
