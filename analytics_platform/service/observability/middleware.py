"""A pure-ASGI middleware: request id, latency histogram and one JSON access log line.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so the endpoint runs in the request's
own task: no extra task per request, and the contextvar the endpoint sees is ours.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from analytics_platform.service.observability.context import (
    REQUEST_ID_HEADER,
    accepted_request_id,
    begin_request,
)
from analytics_platform.service.observability.http_metrics import REQUEST_SECONDS, status_class

access_log = logging.getLogger("analytics_platform.access")
error_log = logging.getLogger("analytics_platform.errors")
UNMATCHED = "<unmatched>"


def route_template(routes: list, scope: Scope) -> str:
    """The template of the route that serves `scope` (`/v1/visitors/{visitor_id}`)."""
    partial = UNMATCHED  # a path served for other methods only (405) keeps its template
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.FULL:
            if isinstance(route, Mount):
                inner = route_template(route.routes, {**scope, **child})
                return route.path + inner if inner != UNMATCHED else UNMATCHED
            return getattr(route, "path", UNMATCHED)
        if match == Match.PARTIAL and partial == UNMATCHED:
            partial = getattr(route, "path", UNMATCHED)
    return partial


class ObservedRequests:
    """Wraps an app: every HTTP request gets an id, a histogram sample and a log line."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        routes: list,
        on_error: Callable[[Request, Exception], object] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.routes = routes
        # The app's handler for an unexpected error. Starlette calls it from its outermost
        # middleware, outside this one, so its 500 would go out without the request id;
        # called here instead, the answer carries the id and the error is logged with it.
        self.on_error = on_error

    def _template(self, scope: Scope) -> str:
        """The route template; the router's own pick (Starlette >= 1.0 leaves it in
        `scope["route"]`) when it is one of the app's top-level routes, which spares a
        second regex match per route; else (a Mount's inner route) matched again."""
        picked = scope.get("route")
        top_level = any(route is picked for route in self.routes)
        if picked is not None and not isinstance(picked, Mount) and top_level:
            return getattr(picked, "path", UNMATCHED)
        return route_template(self.routes, scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        header = _header(scope, REQUEST_ID_HEADER.encode())
        info = begin_request(accepted_request_id(header))
        status, responded = 500, False
        id_header = (b"x-request-id", info.request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as err:
                if responded or self.on_error is None:
                    raise
                error_log.exception(
                    "request failed", extra={"service": self.service, "tenant": info.tenant}
                )
                response = self.on_error(Request(scope, receive), err)
                if inspect.isawaitable(response):
                    response = await response
                await response(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = self._template(scope)
            REQUEST_SECONDS.labels(
                self.service, route, scope["method"], status_class(status)
            ).observe(seconds)
            access_log.info(
                "request",
                extra={
                    "service": self.service,
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "tenant": info.tenant,
                },
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                return None
    return None
