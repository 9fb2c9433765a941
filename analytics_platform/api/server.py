"""Running the read API: uvicorn over `create_app`, one process per embedded data path.

With embedded chDB the process shares the data path with runs through
`EmbeddedReader` (hand-over on a want marker); a second API process on the same
path would mostly answer 503 `clickhouse_busy`, so scale out with a ClickHouse
server (CLICKHOUSE_URL=http://...), where any number of API processes read at once.
"""

from __future__ import annotations

import logging
import signal

import uvicorn

from analytics_platform.api.app import create_app
from analytics_platform.api.reader import serving_reader
from analytics_platform.service.observability.logs import use_json_logs
from analytics_platform.settings import key_cache_seconds, observed_stores

log = logging.getLogger("analytics_platform.api")

GRACEFUL_SHUTDOWN_SECONDS = 10
MAX_CONNECTIONS = 1024


def serve(
    database_url: str,
    clickhouse_url: str,
    wait_seconds: float,
    host: str,
    port: int,
    cache_bytes: int = 64 << 20,
) -> None:
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.keys import KeyAuthenticator

    use_json_logs(service="api")
    auth = KeyAuthenticator(PostgresResource(url=database_url), cache_seconds=key_cache_seconds())
    reader = serving_reader(clickhouse_url, wait_seconds)
    log.info(
        "read API listening on http://%s:%d (OpenAPI at /openapi.json)",
        host,
        port,
        extra={"event": "started"},
    )
    stores = observed_stores(warehouse_url=database_url)
    config = uvicorn.Config(
        create_app(reader, auth, cache_bytes=cache_bytes, stores=stores),
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,  # keep the JSON handler use_json_logs installed
        limit_concurrency=MAX_CONNECTIONS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    # As the collector: uvicorn re-raises the stopping signal after a clean shutdown.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, signal.SIG_IGN)
    try:
        uvicorn.Server(config).run()
    finally:
        reader.close()
        auth.close()
