"""Observability for the HTTP services: `instrument(app, service=...)`.

One call gives any Starlette app (FastAPI included) what the operator watches:
request ids, a latency histogram and JSON access logs (a pure-ASGI middleware),
`GET /metrics` (Prometheus text format; HTTP metrics plus the platform's, read at
scrape time) and `GET /health` (each dependency's state, bounded in time). The
collector and the read API are two processes of one codebase; both call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from analytics_platform.service.observability.context import set_request_tenant
from analytics_platform.service.observability.health import HealthReport, Probe, default_probes
from analytics_platform.service.observability.middleware import ObservedRequests
from analytics_platform.service.observability.platform_metrics import PlatformCollector
from analytics_platform.settings import ObservedStores, observed_stores

__all__ = ["instrument", "set_request_tenant"]

# What each service cannot work without: its /health is 503 when one of these is down.
REQUIRED = {
    "collector": ("landing", "warehouse"),
    "api": ("warehouse", "clickhouse"),
}
_platform_collector: list[PlatformCollector] = []


def _register_platform_collector(stores: ObservedStores) -> None:
    """Once per process (prometheus_client's default registry holds every metric, the
    HTTP ones too): a second instrumented app shares the first's collector."""
    if not _platform_collector:
        _platform_collector.append(PlatformCollector(stores))
        REGISTRY.register(_platform_collector[0])


def instrument(
    app: Starlette,
    *,
    service: str,
    stores: ObservedStores | None = None,
    probes: Mapping[str, Probe] | None = None,
    required: Iterable[str] | None = None,
    platform_metrics: bool = True,
) -> Starlette:
    """Add request ids, latency, access logs, GET /metrics and GET /health to `app`.

    `stores` defaults to the environment's (settings.observed_stores); `probes` replace
    default ones by name (the collector's landing probe writes a file); `required`
    defaults to REQUIRED[service]; `platform_metrics=False` leaves the warehouse and
    Dagster metrics out of /metrics. Call it before the app starts serving.
    """
    stores = stores or observed_stores()
    health = HealthReport(
        service,
        {**default_probes(stores), **(probes or {})},
        required if required is not None else REQUIRED.get(service, ("warehouse",)),
    )
    if platform_metrics:
        _register_platform_collector(stores)

    async def health_endpoint(_request: Request) -> Response:
        import orjson

        status, body = await run_in_threadpool(health.check)
        return Response(orjson.dumps(body), status, media_type="application/json")

    async def metrics_endpoint(_request: Request) -> Response:
        # The platform collection does blocking I/O: off the event loop.
        body = await run_in_threadpool(generate_latest, REGISTRY)
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)

    app.add_route("/health", health_endpoint, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(
        ObservedRequests,
        service=service,
        routes=app.router.routes,
        on_error=app.exception_handlers.get(Exception) or app.exception_handlers.get(500),
    )
    return app
