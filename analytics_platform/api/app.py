"""The read API (FastAPI): a tenant's served analytics over `/v1/`, for its read keys only.

A separate process from the collector (`analytics-platform api`), from the same
code and settings: the collector is the write path and acks events as soon as
they are durable, so a slow read must never sit in front of an ack, and the two
scale on their own (many collectors, few readers, or the reverse).

The tenant comes from the key alone: no parameter names one, a parameter the
endpoint does not take is refused (400), and every query names the key's tenant
database. Answers carry an ETag derived from the served table's parts (see
`queries.fingerprint_sql`); `If-None-Match` with it gets a 304 without the rows
being read. Errors are `{"error": {"code", "message"[, "parameter"]}}`.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations,
# and the `Tenant` alias is local to create_app.
import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import pandas as pd
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from analytics_platform.api import models, queries
from analytics_platform.api.cache import ResponseCache
from analytics_platform.api.reader import ClickHouseBusy, ClickHouseUnavailable, ServingReader
from analytics_platform.service.observability import instrument, set_request_tenant
from analytics_platform.settings import ObservedStores
from analytics_platform.shard import TENANT_DATABASE_PREFIX
from analytics_platform.tenants.ids import SITE_ID_PATTERN, validate_tenant_id

MAX_RANGE_DAYS = 400  # a tenant's default retention
MAX_PAGE_ROWS = 1000
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,255}$"
CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$"


class Authenticator(Protocol):
    def authenticate(self, secret: str | None, kind: str = ...) -> Any: ...


class ApiError(Exception):
    """An answer other than 2xx/304, with a stable `code`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.parameter, self.headers = parameter, headers or {}

    def response(self) -> Response:
        detail = models.ErrorDetail(code=self.code, message=self.message, parameter=self.parameter)
        body = models.ErrorBody(error=detail).model_dump_json(exclude_none=True)
        return Response(body, self.status, self.headers, media_type="application/json")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": models.ErrorBody, "description": text}
    for status, text in {
        400: "invalid_parameter: the parameter named in `error.parameter` is wrong",
        401: "missing_key, invalid_key, key_revoked, invalid_authorization",
        403: "wrong_key_kind (a write key), tenant_suspended",
        404: "not_found, not_served (nothing served for the tenant yet)",
        503: "clickhouse_busy (retry after Retry-After), clickhouse_unavailable, auth_unavailable",
    }.items()
}
ERROR_RESPONSES[304] = {"description": "Not modified: the If-None-Match ETag is current."}


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "invalid_authorization", "send the read key as 'Authorization: Bearer <key>'"
        )
    return token.strip()


def only_parameters(*names: str) -> Callable[[Request], None]:
    """Refuse query parameters the endpoint does not take (none may name a tenant)."""
    allowed = set(names)

    def check(request: Request) -> None:
        for name in request.query_params:
            if name not in allowed:
                takes = ", ".join(sorted(allowed)) or "none"
                raise ApiError(
                    400,
                    "invalid_parameter",
                    f"unknown parameter {name[:64]!r}; this endpoint takes: {takes}",
                    parameter=name[:64],
                )

    return check


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts, SQL NULL (NaN/NaT in pandas) as None, times in UTC.

    Every served DateTime64 is UTC; clickhouse-connect hands them over without a zone
    and chDB with one, so the naive ones are marked UTC and both answer alike.
    """
    if frame.empty:
        return []
    for column in frame.columns:
        # Dates arrive as naive datetimes too; only the times (named so) get a zone.
        naive = pd.api.types.is_datetime64_dtype(frame[column]) and frame[column].dt.tz is None
        if naive and column.endswith(("_at", "_start", "_end")):
            frame[column] = frame[column].dt.tz_localize("UTC")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _etag(parts: list[str]) -> str:
    return '"' + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


def _date_range(start: dt.date, end: dt.date) -> None:
    if end < start:
        raise ApiError(400, "invalid_parameter", "to is before from", parameter="to")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ApiError(
            400,
            "invalid_parameter",
            f"from..to spans more than {MAX_RANGE_DAYS} days: ask in several ranges",
            parameter="to",
        )


Start = Annotated[dt.date, Query(alias="from", description="First day (YYYY-MM-DD, UTC).")]
End = Annotated[dt.date, Query(alias="to", description="Last day, included (YYYY-MM-DD).")]
Site = Annotated[
    str | None,
    # The registry's pattern is for fullmatch; a query pattern is searched, so anchor it.
    Query(pattern=f"^(?:{SITE_ID_PATTERN.pattern})$", description="One of the tenant's site ids."),
]
Channel = Annotated[str | None, Query(pattern=CHANNEL_PATTERN, description="e.g. organic search")]


def create_app(
    reader: ServingReader,
    auth: Authenticator,
    *,
    database_prefix: str = TENANT_DATABASE_PREFIX,
    cache_bytes: int = 64 << 20,
    stores: ObservedStores | None = None,
) -> FastAPI:
    """The read API over `reader` (embedded or server), checking keys with `auth`;
    answers are kept by ETag in up to `cache_bytes` (API_RESPONSE_CACHE_MB). Request
    ids, access logs, GET /health and GET /metrics as the collector's, over `stores`
    (default: the environment's)."""
    cache = ResponseCache(cache_bytes)
    app = FastAPI(
        title="analytics-platform read API",
        version="1",
        description="A tenant's served analytics. Authenticate with a read key: "
        "`Authorization: Bearer apk_r_...`.",
    )
    bearer = HTTPBearer(auto_error=False, description="A read key (apk_r_...).")

    def principal(request: Request, _credentials: Annotated[Any, Depends(bearer)]) -> str:
        """The key's tenant id (read keys only)."""
        from analytics_platform.tenants.authenticator import AuthUnavailable, KeyRejected

        try:
            found = auth.authenticate(_bearer(request.headers.get("authorization")), kind="read")
        except KeyRejected as err:
            raise ApiError(err.status, err.code, err.message) from None
        except AuthUnavailable as err:
            raise ApiError(
                503,
                "auth_unavailable",
                f"keys cannot be checked now: {err}",
                headers={"Retry-After": "5"},
            ) from None
        set_request_tenant(found.tenant_id)
        return found.tenant_id

    Tenant = Annotated[str, Depends(principal)]

    def answer(
        request: Request,
        tenant: str,
        table: str,
        sql: Callable[[str], str],
        shape: Callable[[list[dict[str, Any]]], BaseModel],
    ) -> Response:
        """Read `table` for the tenant: 304 when the client's ETag is current, else rows."""
        database = database_prefix + validate_tenant_id(tenant)
        try:
            with reader.reading() as session:
                uuid = session.query_df(queries.table_uuid_sql(database, table))
                if uuid.empty:
                    raise ApiError(
                        404, "not_served", "nothing has been served for this key's tenant yet"
                    )
                found = session.query_df(queries.fingerprint_sql(database, table)).iloc[0]
                etag = _etag(
                    [
                        tenant,
                        request.url.path,
                        str(sorted(request.query_params.multi_items())),
                        str(uuid["table_uuid"].iloc[0]),
                        str(found["parts"]),
                        str(found["part_count"]),
                    ]
                )
                headers = {
                    "ETag": etag,
                    "Cache-Control": "private, no-cache",
                    "Vary": "Authorization",
                }
                if int(found["part_count"]):
                    modified = dt.datetime.fromisoformat(str(found["modified"]))
                    headers["Last-Modified"] = modified.strftime("%a, %d %b %Y %H:%M:%S GMT")
                if _matches(request.headers.get("if-none-match"), etag):
                    return Response(status_code=304, headers=headers)
                cached = cache.get(etag)
                if cached is not None:
                    return Response(cached, 200, headers, media_type="application/json")
                frame = session.query_df(sql(database))
        except ClickHouseBusy as err:
            raise ApiError(
                503,
                "clickhouse_busy",
                f"{err}; retry after Retry-After seconds",
                headers={"Retry-After": str(err.retry_after)},
            ) from None
        except ClickHouseUnavailable as err:
            raise ApiError(
                503, "clickhouse_unavailable", str(err), headers={"Retry-After": "5"}
            ) from None
        body = shape(_records(frame)).model_dump_json().encode()
        cache.put(etag, body)
        return Response(body, 200, headers, media_type="application/json")

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, err: ApiError) -> Response:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError) -> Response:
        first = err.errors()[0] if err.errors() else {}
        location = [str(part) for part in first.get("loc", ())]
        parameter = location[1] if len(location) > 1 else (location[0] if location else None)
        message = f"{parameter}: {first.get('msg', 'invalid value')}"
        return ApiError(400, "invalid_parameter", message, parameter=parameter).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return ApiError(
            err.status_code, codes.get(err.status_code, "http_error"), str(err.detail)
        ).response()

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, err: Exception) -> Response:
        # Logged, with the request id, by the observability middleware that calls this.
        return ApiError(500, "internal_error", "the request failed; see the API's log").response()

    common = {"responses": ERROR_RESPONSES}

    @app.get(
        "/v1/metrics/daily",
        response_model=models.DailyMetricsList,
        dependencies=[Depends(only_parameters("from", "to", "site"))],
        **common,
    )
    def daily_metrics(request: Request, tenant: Tenant, start: Start, end: End, site: Site = None):
        """Daily metrics, one row per day and site (all sites unless `site` is given)."""
        _date_range(start, end)
        return answer(
            request,
            tenant,
            "fct_daily_metrics",
            lambda db: queries.daily_metrics_sql(db, start, end, site),
            lambda rows: models.DailyMetricsList(data=rows),
        )

    @app.get(
        "/v1/channels",
        response_model=models.ChannelList,
        dependencies=[Depends(only_parameters("from", "to", "channel"))],
        **common,
    )
    def channels(request: Request, tenant: Tenant, start: Start, end: End, channel: Channel = None):
        """Sessions, visitors, conversions and revenue per day and default channel."""
        _date_range(start, end)
        return answer(
            request,
            tenant,
            "fct_channel_daily",
            lambda db: queries.channels_sql(db, start, end, channel),
            lambda rows: models.ChannelList(data=rows),
        )

    @app.get(
        "/v1/funnels",
        response_model=models.FunnelList,
        dependencies=[Depends(only_parameters("from", "to"))],
        **common,
    )
    def funnels(request: Request, tenant: Tenant, start: Start, end: End):
        """The funnel's steps per day: sessions and visitors reaching each, and conversions."""
        _date_range(start, end)
        return answer(
            request,
            tenant,
            "fct_funnel_daily",
            lambda db: queries.funnels_sql(db, start, end),
            lambda rows: models.FunnelList(data=rows),
        )

    @app.get(
        "/v1/experiments",
        response_model=models.ExperimentList,
        dependencies=[Depends(only_parameters("experiment_id"))],
        **common,
    )
    def experiments(
        request: Request,
        tenant: Tenant,
        experiment_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    ):
        """Each experiment's variants: exposure, conversion, uplift, z-score and p-value."""
        return answer(
            request,
            tenant,
            "fct_experiment_results",
            lambda db: queries.experiments_sql(db, experiment_id),
            lambda rows: models.ExperimentList(data=rows),
        )

    @app.get(
        "/v1/sessions",
        response_model=models.SessionPage,
        dependencies=[Depends(only_parameters("from", "to", "site", "channel", "limit", "cursor"))],
        **common,
    )
    def sessions(
        request: Request,
        tenant: Tenant,
        start: Start,
        end: End,
        site: Site = None,
        channel: Channel = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_ROWS)] = 100,
        cursor: Annotated[str | None, Query(max_length=2048)] = None,
    ):
        """Sessions by (session_start, session_id), a page at a time (`next_cursor`)."""
        _date_range(start, end)
        filters = queries.SessionFilter(start, end, site, channel)
        try:
            after = None if cursor is None else queries.decode_cursor(cursor, filters)
        except queries.InvalidCursor as err:
            raise ApiError(400, "invalid_parameter", str(err), parameter="cursor") from None

        def page(rows: list[dict[str, Any]]) -> models.SessionPage:
            more = len(rows) > limit
            rows = rows[:limit]
            next_cursor = None
            if more:
                last = rows[-1]
                position = queries.SessionPosition(
                    _utc_millis(last["session_start"]), str(last["session_id"])
                )
                next_cursor = queries.encode_cursor(position, filters)
            return models.SessionPage(data=rows, next_cursor=next_cursor)

        return answer(
            request,
            tenant,
            "fct_sessions",
            lambda db: queries.sessions_sql(db, filters, after, limit),
            page,
        )

    @app.get(
        "/v1/visitors/{visitor_id}",
        response_model=models.VisitorResponse,
        dependencies=[Depends(only_parameters())],
        **common,
    )
    def visitor(
        request: Request,
        tenant: Tenant,
        visitor_id: Annotated[str, Path(max_length=512)],
    ):
        """One visitor: first and last seen, first-touch attribution, sessions, revenue."""

        def one(rows: list[dict[str, Any]]) -> models.VisitorResponse:
            if not rows:
                raise ApiError(404, "not_found", "this tenant has no visitor with that id")
            return models.VisitorResponse(data=rows[0])

        return answer(
            request, tenant, "dim_visitors", lambda db: queries.visitor_sql(db, visitor_id), one
        )

    instrument(app, service="api", stores=stores)
    return app


def _utc_millis(value: Any) -> str:
    """A session_start as the cursor keeps it: 'YYYY-MM-DD HH:MM:SS.fff' in UTC."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
