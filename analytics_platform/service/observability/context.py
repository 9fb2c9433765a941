"""The request being served: its id and, once known, its tenant, for logs and metrics.

A contextvar holds one mutable `RequestInfo` per request: an endpoint that learns the
tenant sets it on that object, so the access log sees it even when the endpoint ran in
a copied context (FastAPI runs sync dependencies in the thread pool).
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_HEADER = "x-request-id"
# A client's id is echoed into logs and headers: bounded and plain, or replaced.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass
class RequestInfo:
    request_id: str
    tenant: str | None = None


_current: ContextVar[RequestInfo | None] = ContextVar("analytics_platform_request", default=None)


def accepted_request_id(header: str | None) -> str:
    """The client's `X-Request-Id` if it is 1-128 of [A-Za-z0-9._:-], else a new id."""
    if header is not None and _SANE_REQUEST_ID.match(header):
        return header
    return secrets.token_hex(16)


def begin_request(request_id: str) -> RequestInfo:
    info = RequestInfo(request_id)
    _current.set(info)
    return info


def current_request() -> RequestInfo | None:
    """The request this code serves, or None outside a request."""
    return _current.get()


def set_request_tenant(tenant: str) -> None:
    """Name the tenant of the current request (its access log line carries it)."""
    info = _current.get()
    if info is not None:
        info.tenant = tenant
