"""The collector's HTTP endpoints (Starlette): POST /v1/events, POST /collect; GET /health
and GET /metrics come from `observability.instrument` (the landing probe is the collector's).

Every answer is JSON. `202 {"accepted": n}` is sent only once the request's events
are synced to landing segments; an error is `{"error": {"code", "message"}}` with a
stable code (the README lists them). Blocking work never runs on the event loop: key
look-ups run in the thread pool (psycopg is synchronous), file I/O in the segment
writer's thread.

Starlette rather than FastAPI: the endpoints read raw bytes and answer with
pre-serialized JSON, so FastAPI's request models and validation would add cost and
nothing we use.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from analytics_platform.service.batches import Refused, landing_lines, parse_batch
from analytics_platform.service.body import check_media_type, read_body
from analytics_platform.service.landing_io import probe_landing
from analytics_platform.service.observability import instrument, set_request_tenant
from analytics_platform.service.observability.health import DOWN, OK, DependencyState
from analytics_platform.service.observability.http_metrics import count_accepted, count_rejected
from analytics_platform.service.rate_limit import TenantRateLimit, retry_after
from analytics_platform.service.segments import LandingUnavailable, SegmentWriter, WriteRequest
from analytics_platform.settings import CollectorSettings, ObservedStores

ACCEPTED_STATUS = 202
PREFLIGHT_MAX_AGE_SECONDS = 600
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding"


class Authenticator(Protocol):
    """What the collector asks of `tenants.keys.KeyAuthenticator` (all synchronous)."""

    def authenticate(self, secret: str | None, kind: str = ...) -> Any: ...

    def origin_allowed(self, tenant_id: str, origin: str) -> bool: ...

    def any_tenant_allows(self, origin: str) -> bool: ...


def json_response(status: int, payload: object, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def error_response(refused: Refused, headers: dict | None = None) -> Response:
    body = {"error": {"code": refused.code, "message": refused.message}}
    return json_response(refused.status, body, {**refused.headers, **(headers or {})})


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "invalid_authorization", "send the key as Authorization: Bearer <key>")
    return token.strip()


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


class Collector:
    """The endpoints, over one segment writer, authenticator and rate limit."""

    def __init__(
        self, settings: CollectorSettings, writer: SegmentWriter, auth: Authenticator
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.auth = auth
        self.rate_limit = TenantRateLimit(
            settings.rate_events_per_second, settings.rate_burst_events
        )

    # ------------------------------------------------------------------ keys

    async def _principal(self, secret: str | None) -> Any:
        from analytics_platform.tenants.keys import AuthUnavailable, KeyRejected

        try:
            return await run_in_threadpool(self.auth.authenticate, secret, kind="write")
        except KeyRejected as err:
            raise Refused(err.status, err.code, err.message) from None
        except AuthUnavailable as err:
            raise Refused(503, "auth_unavailable", f"keys cannot be checked now: {err}") from None

    async def _origin_allowed(self, tenant_id: str, origin: str) -> bool:
        from analytics_platform.tenants.keys import AuthUnavailable

        try:
            return await run_in_threadpool(self.auth.origin_allowed, tenant_id, origin)
        except AuthUnavailable as err:
            raise Refused(
                503, "auth_unavailable", f"origins cannot be checked now: {err}"
            ) from None

    def _check_rate(self, tenant: str, events: int) -> None:
        wait = (
            self.rate_limit.admit(tenant, events)
            if events
            else self.rate_limit.refuse_early(tenant, self.settings.max_events_per_request)
        )
        if wait > 0:
            raise Refused(
                429,
                "rate_limited",
                f"this key's tenant sends more than {self.settings.rate_events_per_second:g} "
                "events/s; retry after the Retry-After seconds",
                {"Retry-After": retry_after(wait)},
            )

    # ------------------------------------------------------------------ writing

    async def _land(self, tenant: str, lines_by_day: dict[str, bytes]) -> None:
        loop = asyncio.get_running_loop()
        written: asyncio.Future = loop.create_future()

        def done(error: LandingUnavailable | None) -> None:
            loop.call_soon_threadsafe(_settle, written, error)

        self.writer.submit(WriteRequest(tenant, lines_by_day, done))
        error = await written
        if error is not None:
            raise Refused(503, "landing_unavailable", f"events not accepted: {error}")

    async def ingest(self, request: Request, single: bool) -> Response:
        origin = request.headers.get("origin")
        cors: dict[str, str] = {}
        tenant: str | None = None
        batch = None
        try:
            header_key = _bearer(request.headers.get("authorization"))
            principal = await self._principal(header_key) if header_key else None
            if principal is not None:
                tenant = principal.tenant_id
                set_request_tenant(tenant)
                self._check_rate(principal.tenant_id, 0)  # a flood refused before its body
            check_media_type(request.headers)
            body = await read_body(request.headers, request.stream(), self.settings.max_body_bytes)
            batch = parse_batch(
                body, max_events=self.settings.max_events_per_request, single=single
            )
            if principal is None:
                principal = await self._principal(batch.write_key)
            tenant = principal.tenant_id
            set_request_tenant(tenant)
            if origin is not None:
                if not await self._origin_allowed(tenant, origin):
                    raise Refused(
                        403, "origin_not_allowed", f"origin {origin[:200]!r} may not send events"
                    )
                cors = _cors_headers(origin)
            self._check_rate(tenant, len(batch.events))
            lines = landing_lines(
                batch.events, dt.datetime.now(dt.timezone.utc), self.settings.start_date
            )
            await self._land(tenant, lines)
        except Refused as refused:
            count_rejected(tenant, refused.code, len(batch.events) if batch else None)
            return error_response(refused, cors)
        count_accepted(tenant, len(batch.events))
        return json_response(ACCEPTED_STATUS, {"accepted": len(batch.events)}, cors)

    # ------------------------------------------------------------------ endpoints

    async def events(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return await self.preflight(request)
        return await self.ingest(request, single=False)

    async def collect(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return await self.preflight(request)
        return await self.ingest(request, single=True)

    async def preflight(self, request: Request) -> Response:
        """A browser's CORS preflight: allowed for origins some tenant allows."""
        from analytics_platform.tenants.keys import AuthUnavailable

        origin = request.headers.get("origin")
        if origin is None:
            return error_response(Refused(400, "not_a_preflight", "OPTIONS without Origin"))
        try:
            allowed = await run_in_threadpool(self.auth.any_tenant_allows, origin)
        except AuthUnavailable as err:
            return error_response(Refused(503, "auth_unavailable", str(err)))
        if not allowed:
            return error_response(
                Refused(403, "origin_not_allowed", f"origin {origin[:200]!r} may not send events")
            )
        headers = {
            **_cors_headers(origin),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
        }
        return Response(status_code=204, headers=headers)

    def landing_state(self) -> DependencyState:
        """/health's landing probe: ok only when a probe file can be created, synced and
        removed in LANDING_DIR and the segment writer runs (thread pool, bounded by /health)."""
        try:
            if not self.writer.alive:
                raise OSError("the segment writer is not running (starting or stopping)")
            probe_landing(self.settings.landing_dir)
        except OSError as err:
            return DependencyState(DOWN, f"landing zone {self.settings.landing_dir}: {err}")
        return DependencyState(OK, f"writable; {self.writer.open_segments} open segment(s)")


def _settle(future: asyncio.Future, error: LandingUnavailable | None) -> None:
    if not future.done():  # the client may have gone away
        future.set_result(error)


async def _http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as JSON, like every other answer."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "internal_error")
    message = (
        "no such endpoint; see /v1/events, /collect, /health, /metrics" if status == 404 else code
    )
    return error_response(Refused(status, code, message))


def create_app(
    settings: CollectorSettings,
    writer: SegmentWriter,
    auth: Authenticator,
    stores: ObservedStores | None = None,
) -> Starlette:
    """The ASGI app; the writer's thread runs between the app's start-up and shutdown,
    and shutdown seals every segment. `stores`: what /health and /metrics read
    (default: the environment's)."""
    collector = Collector(settings, writer, auth)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        writer.start()
        try:
            yield
        finally:
            await run_in_threadpool(writer.close)

    app = Starlette(
        routes=[
            Route("/v1/events", collector.events, methods=["POST", "OPTIONS"]),
            Route("/collect", collector.collect, methods=["POST", "OPTIONS"]),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    return instrument(
        app, service="collector", stores=stores, probes={"landing": collector.landing_state}
    )
