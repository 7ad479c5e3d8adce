"""`vaegan serve`: both front-ends, HTTP (server.py) and, with --grpc-port, gRPC (grpc_oip.py), over
one ServingCore; neither front-end knows the other."""

from __future__ import annotations

import logging
from collections.abc import Callable

from vaegan.config import ServeConfig
from vaegan.runtime.http_guard import ensure_fd_budget, uvicorn_config
from vaegan.runtime.sampler import Sampler
from vaegan.runtime.server import create_app
from vaegan.runtime.serving import ServingCore

log = logging.getLogger(__name__)


def serve(
    sampler: Sampler, host: str, port: int, cfg: ServeConfig, loader: Callable[[], Sampler] | None = None
) -> None:
    """Run until SIGINT/SIGTERM; uvicorn then stops accepting and finishes what it accepted.
    loader: loads the artifact dir again, for reloads (on request, or on change with --reload poll)."""
    import uvicorn

    if warning := ensure_fd_budget(cfg.max_connections):
        log.warning("%s", warning)
    core = ServingCore(sampler, cfg, loader)
    app = create_app(core)
    grpc_server = None
    if cfg.grpc_port is not None:
        from vaegan.runtime.grpc_oip import start

        grpc_server, bound = start(core, host, cfg.grpc_port)
        log.info("Open Inference Protocol over gRPC on %s:%d", host, bound)
    try:
        uvicorn.Server(uvicorn_config(app, host, port, core.cfg)).run()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=5).wait()
