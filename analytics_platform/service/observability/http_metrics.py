"""The metrics the HTTP services update as they serve (prometheus_client, default registry).

Labels are bounded: `route` is the matched route's template (`/v1/events`, never a raw
path; unmatched paths share `<unmatched>`), `status` a class (`2xx`), `tenant` only a
tenant a valid key named (`unknown` before that).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Seconds; the collector answers in about a millisecond, the read API in tens.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN_TENANT = "unknown"

REQUEST_SECONDS = Histogram(
    "analytics_platform_http_request_duration_seconds",
    "Time from a request's start to its response's last byte, by matched route template.",
    ["service", "route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_ACCEPTED = Counter(
    "analytics_platform_collector_events_accepted",
    "Events the collector acknowledged (202: synced to a landing segment), per tenant.",
    ["tenant"],
)
EVENTS_REJECTED = Counter(
    "analytics_platform_collector_events_rejected",
    "Events in requests the collector refused after reading their body, per tenant and "
    "error code (rate_limited, origin_not_allowed, landing_unavailable, ...).",
    ["tenant", "reason"],
)
REQUESTS_REJECTED = Counter(
    "analytics_platform_collector_requests_rejected",
    "Requests the collector refused, per tenant (unknown before a valid key) and error code.",
    ["tenant", "reason"],
)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def count_accepted(tenant: str, events: int) -> None:
    EVENTS_ACCEPTED.labels(tenant).inc(events)


def count_rejected(tenant: str | None, reason: str, events: int | None) -> None:
    """One refused request; `events` when its body was read (None: refused before)."""
    tenant = tenant or UNKNOWN_TENANT
    REQUESTS_REJECTED.labels(tenant, reason).inc()
    if events:
        EVENTS_REJECTED.labels(tenant, reason).inc(events)
