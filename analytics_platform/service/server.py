"""Running the collector: recover what dead collectors left, then serve with uvicorn.

Logs are JSON lines on stderr (observability.logs), one per request with its request id.
One process, one event loop (uvloop and httptools when installed, as uvicorn's
`auto` picks them). SIGTERM stops accepting, lets in-flight requests finish, seals
every segment and exits 0.
"""

from __future__ import annotations

import logging

from analytics_platform.service.collector import create_app
from analytics_platform.service.observability.logs import use_json_logs
from analytics_platform.service.recovery import recover_abandoned
from analytics_platform.service.segments import SegmentWriter
from analytics_platform.service.uvicorn_run import run_uvicorn
from analytics_platform.settings import CollectorSettings, key_cache_seconds, observed_stores

log = logging.getLogger("analytics_platform.collector")
# Connections beyond this get 503 from uvicorn: with the body limit, it bounds memory.
MAX_CONNECTIONS = 2048
GRACEFUL_SHUTDOWN_SECONDS = 20


def serve(settings: CollectorSettings, database_url: str, host: str, port: int) -> None:
    from analytics_platform.resources.postgres import PostgresResource
    from analytics_platform.tenants.keys import KeyAuthenticator

    use_json_logs(service="collector")
    settings.landing_dir.mkdir(parents=True, exist_ok=True)
    writer = SegmentWriter(
        settings.landing_dir,
        max_age_seconds=settings.segment_max_age_seconds,
        max_bytes=settings.segment_max_bytes,
    )
    recovered = recover_abandoned(settings.landing_dir, own_journal=writer.journal)
    log.info(
        "collector %s: recovered %d segment(s) left open by stopped collectors; "
        "listening on http://%s:%d",
        writer.instance,
        len(recovered),
        host,
        port,
        extra={"event": "started", "recovered_segments": len(recovered)},
    )
    auth = KeyAuthenticator(PostgresResource(url=database_url), cache_seconds=key_cache_seconds())
    run_uvicorn(
        create_app(settings, writer, auth, observed_stores(warehouse_url=database_url)),
        host,
        port,
        max_connections=MAX_CONNECTIONS,
        graceful_seconds=GRACEFUL_SHUTDOWN_SECONDS,
    )
