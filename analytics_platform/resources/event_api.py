"""The tenants' HTTP event export APIs: retries with backoff, Retry-After, a rate limit, pages.

Every request loop is bounded: retries in number (`retries`), each attempt in time
(`request_deadline_seconds`) and size (`max_page_bytes`), waits by `backoff_max_seconds`
and `retry_after_max_seconds`, and the paging of a day by `max_pages` and a refusal
to send a cursor twice.

Endpoint contract (each tenant's `api_base_url` in `platform.tenants`):

    GET {api_base_url}/events?start=<ISO 8601 UTC>&end=<ISO 8601 UTC>&limit=<n>[&cursor=<c>]
    Authorization: Bearer <the value of the variable named by api_token_env>

    200 {"events": [{...}, ...], "next_cursor": "<opaque>" | null, "has_more": true | false}

Events are returned with `start <= occurred_at < end`, in a stable order. The
next page is requested with `cursor=<next_cursor>` while `has_more` is true
(without `has_more`: while `next_cursor` is set and the page was not empty). A
`next_cursor` on the last page resumes the export after its last event, so a
later run only gets what arrived since; `null` means the export cannot resume.
"""

import datetime as dt
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from dagster import ConfigurableResource
from pydantic import Field

from analytics_platform.ingest.contract import ContractViolation, Reason
from analytics_platform.redaction import redact
from analytics_platform.resources.bounded_http import (
    BodyTooLarge,
    DeadlinePassed,
    backoff_delay,
    bounded_get,
    retry_after_seconds,
)
from analytics_platform.tenants.registry import Tenant

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class EventApiError(RuntimeError):
    """The API could not be read; the tenant-day being loaded stays as it was."""


@dataclass(frozen=True)
class ApiPage:
    """One page of an export, as received."""

    number: int  # 1-based within one fetch
    source: str  # the page's URL (no credentials): lineage `_source`
    cursor: str | None  # the cursor that requested this page
    text: str
    events: list[object]
    next_cursor: str | None
    has_more: bool
    # Set when the page is not a valid export page: it is quarantined whole, paging stops.
    violation: ContractViolation | None = None


class _BearerAuth(requests.auth.AuthBase):
    """Adds the token to each request; its repr never shows it."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(***)"


class MinIntervalLimiter:
    """At most `per_second` requests per second: each waits 1/per_second after the previous."""

    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)


_limiters: dict[tuple[str, float], MinIntervalLimiter] = {}
_limiters_lock = threading.Lock()


def tenant_limiter(tenant_id: str, per_second: float) -> MinIntervalLimiter:
    """The process's limiter for a tenant: every client of that tenant shares it."""
    with _limiters_lock:
        return _limiters.setdefault((tenant_id, per_second), MinIntervalLimiter(per_second))


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_page(number: int, source: str, cursor: str | None, body: bytes) -> ApiPage:
    """A response body -> ApiPage; a body that breaks the page contract carries a violation."""

    def malformed(reason: Reason, detail: str, text: str) -> ApiPage:
        violation = ContractViolation(reason, f"page {number} ({source}): {detail}")
        return ApiPage(number, source, cursor, text, [], None, False, violation)

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        return malformed(
            Reason.UNDECODABLE_BYTES, f"not UTF-8: {err}", body.decode("utf-8", "replace")
        )
    try:
        page = json.loads(text)
    except ValueError as err:
        return malformed(Reason.INVALID_JSON, f"not JSON: {err}", text)
    if not isinstance(page, dict) or not isinstance(page.get("events"), list):
        return malformed(Reason.WRONG_TYPE, "not a JSON object with an 'events' list", text)
    next_cursor, has_more = page.get("next_cursor"), page.get("has_more")
    if isinstance(next_cursor, int) and not isinstance(next_cursor, bool):
        next_cursor = str(next_cursor)
    if next_cursor is not None and not isinstance(next_cursor, str):
        return malformed(Reason.WRONG_TYPE, "next_cursor must be a string or null", text)
    if has_more is None:
        has_more = next_cursor is not None and bool(page["events"])
    if not isinstance(has_more, bool) or (has_more and next_cursor is None):
        return malformed(Reason.WRONG_TYPE, "has_more must be a boolean, with a next_cursor", text)
    return ApiPage(number, source, cursor, text, page["events"], next_cursor, has_more)


class EventApiClient:
    """One tenant's export API; use through `EventApiResource.client`."""

    def __init__(self, api: "EventApiResource", tenant: Tenant, session: requests.Session):
        self.api = api
        self.tenant = tenant
        self.endpoint = f"{tenant.api_base_url.rstrip('/')}/events"
        self._session = session
        self._limiter = tenant_limiter(tenant.tenant_id, api.requests_per_second)

    def _where(self, day: dt.date, cursor: str | None) -> str:
        return f"tenant {self.tenant.tenant_id!r}, day {day}, cursor {cursor!r}"

    def _refusal(self, status: int) -> str:
        token_env = self.tenant.api_token_env
        refused = (
            f"the token in ${token_env} was refused; set a valid one and re-run (not retried)"
            if token_env
            else "the API wants a token: register the tenant with --api-token-env VAR"
        )
        return {
            401: refused,
            403: refused,
            404: "check the tenant's api_base_url (the platform calls <api_base_url>/events)",
        }.get(status, "the API refused the request (not retried)")

    def _get(self, day: dt.date, cursor: str | None, source: str, params: dict[str, str]) -> bytes:
        """The body of a 200 answer, retrying connection errors, timeouts and 429/5xx."""
        api = self.api
        where = f"{self._where(day, cursor)}: GET {source}"
        failure = ""
        for attempt in range(api.retries + 1):
            self._limiter.wait()
            try:
                answer = bounded_get(
                    self._session,
                    self.endpoint,
                    params,
                    connect_timeout=api.connect_timeout_seconds,
                    read_timeout=api.read_timeout_seconds,
                    deadline_seconds=api.request_deadline_seconds,
                    max_bytes=api.max_page_bytes,
                )
            except DeadlinePassed:
                raise EventApiError(
                    f"{where}: the answer was not complete within request_deadline_seconds "
                    f"({api.request_deadline_seconds:g} s); not retried. The API is too slow "
                    "or stalling: fix it or raise the limit on the event_api resource"
                ) from None
            except BodyTooLarge as err:
                raise EventApiError(
                    f"{where}: {err} (max_page_bytes); ask for smaller pages (page_size) "
                    "or raise the limit on the event_api resource"
                ) from None
            except requests.RequestException as err:
                failure = f"{type(err).__name__}: {redact(str(err))}"
                wait = None
            else:
                if answer.status == 200:
                    return answer.body
                if answer.status not in RETRY_STATUSES:
                    raise EventApiError(
                        f"{where} answered HTTP {answer.status}: {self._refusal(answer.status)}"
                    )
                failure = f"HTTP {answer.status}"
                wait = retry_after_seconds(answer.headers.get("Retry-After"))
                if wait is not None and wait > api.retry_after_max_seconds:
                    raise EventApiError(
                        f"{where} answered HTTP {answer.status} with Retry-After "
                        f"{answer.headers['Retry-After']!r} ({wait:.0f} s), more than "
                        f"retry_after_max_seconds ({api.retry_after_max_seconds} s); not "
                        "waiting: re-run the day later"
                    )
            if attempt < api.retries:
                if wait is None:
                    wait = backoff_delay(
                        attempt + 1,
                        api.backoff_seconds,
                        api.backoff_jitter_seconds,
                        api.backoff_max_seconds,
                    )
                time.sleep(wait)
        raise EventApiError(
            f"{where} failed after {api.retries} retries: {failure}; the API is failing, "
            "the run can be retried later"
        )

    def export(
        self, start: dt.datetime, end: dt.datetime, cursor: str | None = None
    ) -> Iterator[ApiPage]:
        """The pages of events in [start, end), from `cursor` (None: from the beginning).

        Stops after the last page, or after a malformed page (yielded with its violation).
        Raises EventApiError when a request fails once its retries are used up, when
        `next_cursor` repeats a cursor already sent for this export (a cycle), or when the
        export has more than `max_pages` pages: paging always ends.
        """
        day = start.astimezone(dt.timezone.utc).date()
        sent: set[str | None] = set()
        for number in range(1, self.api.max_pages + 1):
            sent.add(cursor)
            params = {"start": _iso(start), "end": _iso(end), "limit": str(self.api.page_size)}
            if cursor is not None:
                params["cursor"] = cursor
            source = redact(requests.Request("GET", self.endpoint, params=params).prepare().url)
            page = parse_page(number, source, cursor, self._get(day, cursor, source, params))
            yield page
            if page.violation is not None or not page.has_more:
                return
            if page.next_cursor in sent:
                raise EventApiError(
                    f"{self._where(day, cursor)}: next_cursor {page.next_cursor!r} (page "
                    f"{number}) was already sent for this day, so paging would cycle; stopped "
                    "and loaded nothing for the day. Fix the API's cursors, then re-run"
                )
            cursor = page.next_cursor
        raise EventApiError(
            f"{self._where(day, page.cursor)}: the export still has more after max_pages "
            f"({self.api.max_pages}) pages (next_cursor {cursor!r}); stopped and loaded nothing "
            "for the day. Raise max_pages or page_size on the event_api resource if the day "
            "really is that large"
        )


class EventApiResource(ConfigurableResource):
    """HTTP access to the tenants' event export APIs (see this module's docstring)."""

    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    read_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait for the answer or for any bytes of it; then it is retried.",
    )
    request_deadline_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "Wall-clock limit for one answer, from the request to its last byte (not per "
            "read: a server dripping bytes is cut off). Not retried: the day fails."
        ),
    )
    max_page_bytes: int = Field(
        default=64 << 20,
        gt=0,
        description="Longest page body accepted (decoded); a longer one fails the day.",
    )
    max_pages: int = Field(
        default=10_000,
        gt=0,
        description="Most pages read for one tenant-day; an export with more fails the day.",
    )
    retries: int = Field(
        default=5,
        ge=0,
        description="Retries per request on connection errors, timeouts and HTTP 429/5xx.",
    )
    backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Exponential backoff factor: consecutive retries wait 0, 2x, 4x, 8x ... this "
            "(urllib3 Retry's schedule), unless the response carries Retry-After."
        ),
    )
    backoff_jitter_seconds: float = Field(
        default=1.0, ge=0, description="Up to this much random time is added to each backoff."
    )
    backoff_max_seconds: float = Field(default=60.0, ge=0, description="Longest backoff.")
    retry_after_max_seconds: int = Field(
        default=600,
        ge=0,
        description=(
            "A Retry-After on a retried status is obeyed up to this; a longer one fails the "
            "day at once, naming it, instead of sleeping for hours."
        ),
    )
    requests_per_second: float = Field(
        default=5.0, gt=0, description="Most requests per second sent to one tenant's API."
    )
    page_size: int = Field(default=1000, gt=0, description="The `limit` sent with each request.")

    def token(self, tenant: Tenant) -> str | None:
        """The tenant's token, from the environment variable the registry names (None: no auth)."""
        name = tenant.api_token_env
        if name is None:
            return None
        token = os.environ.get(name)
        if not token:
            raise EventApiError(
                f"tenant {tenant.tenant_id!r}: environment variable {name} (its api_token_env) "
                f"is not set; set {name} to the tenant's API token where Dagster runs "
                "(code server and run workers), or clear api_token_env for an API without auth"
            )
        return token

    @contextmanager
    def client(self, tenant: Tenant) -> Iterator[EventApiClient]:
        """A session for one tenant's API, closed on exit."""
        if not tenant.has_api:
            raise EventApiError(f"tenant {tenant.tenant_id!r} has no api_base_url")
        token = self.token(tenant)
        with requests.Session() as session:
            # Retries are EventApiClient._get's: each attempt has a deadline, and a huge
            # Retry-After fails instead of sleeping.
            session.headers["Accept"] = "application/json"
            if token is not None:
                # Session auth (not a header) also keeps ~/.netrc from replacing the token.
                session.auth = _BearerAuth(token)
            yield EventApiClient(self, tenant, session)
