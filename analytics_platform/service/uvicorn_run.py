"""Serving an ASGI app of the platform (the collector, the read API) with uvicorn."""

from __future__ import annotations

import signal
from typing import Any

import uvicorn


def run_uvicorn(
    app: Any, host: str, port: int, *, max_connections: int, graceful_seconds: float
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then let in-flight requests finish and exit 0.

    Access logs come from the platform's middleware (JSON, with request ids), so uvicorn
    keeps the handler `use_json_logs` installed and logs only warnings. Connections
    beyond `max_connections` get 503 from uvicorn.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,
        limit_concurrency=max_connections,
        timeout_graceful_shutdown=graceful_seconds,
    )
    # uvicorn re-raises the signal that stopped it once it is done, so the process
    # would die of SIGTERM after a clean shutdown; ignored here, it exits 0 instead.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, signal.SIG_IGN)
    uvicorn.Server(config).run()
