"""Running the read API: uvicorn over `create_app`, one process per embedded data path.

With embedded chDB the process shares the data path with runs through
`EmbeddedReader` (hand-over on a want marker); a second API process on the same
path would mostly answer 503 `clickhouse_busy`, so scale out with a ClickHouse
server (CLICKHOUSE_URL=http://...), where any number of API processes read at once.
"""

from __future__ import annotations

import logging

from analytics_platform.api.app import create_app
from analytics_platform.api.reader import serving_reader
from analytics_platform.service.observability.logs import use_json_logs
from analytics_platform.service.uvicorn_run import run_uvicorn
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
    app = create_app(reader, auth, cache_bytes=cache_bytes, stores=stores)
    try:
        run_uvicorn(
            app,
            host,
            port,
            max_connections=MAX_CONNECTIONS,
            graceful_seconds=GRACEFUL_SHUTDOWN_SECONDS,
        )
    finally:
        reader.close()
        auth.close()
