"""The read API's response bodies: what /openapi.json promises and every answer is built from.

Fields are the served marts' columns (the dbt YAML's), without `tenant_id` (the
key names the tenant) and `_loaded_at`. Lists come as `{"data": [...]}`; the
sessions list adds `next_cursor`.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class DailyMetrics(BaseModel):
    event_date: dt.date
    site_id: str
    visitors: int
    new_visitors: int
    returning_visitors: int
    identified_users: int
    sessions: int
    page_views: int
    events: int
    bounce_rate: float
    average_session_seconds: float
    conversions: int
    conversion_rate: float
    revenue: float


class ChannelDay(BaseModel):
    event_date: dt.date
    channel: str
    sessions: int
    visitors: int
    conversions: int
    conversion_rate: float
    revenue: float


class FunnelStep(BaseModel):
    event_date: dt.date
    step_number: int
    step_name: str
    sessions: int
    visitors: int
    conversion_from_previous: float | None
    conversion_from_first: float | None


class ExperimentVariant(BaseModel):
    experiment_id: str
    variant: str
    is_control: bool
    exposed_visitors: int
    converters: int
    conversion_rate: float
    switched_visitors: int
    first_exposed_at: dt.datetime
    uplift: float | None = Field(description="Relative to the control's conversion rate.")
    z_score: float | None
    p_value: float | None = Field(description="Two-sided, against the control (z-test).")


class Session(BaseModel):
    session_id: str
    session_date: dt.date
    site_id: str
    visitor_id: str
    user_id: str | None
    session_start: dt.datetime
    session_end: dt.datetime
    duration_seconds: int
    page_views: int
    events: int
    landing_path: str | None
    exit_path: str | None
    referrer: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    channel: str
    is_bounce: bool
    converted: bool
    revenue: float


class Visitor(BaseModel):
    visitor_id: str
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    first_touch_channel: str
    first_touch_utm_source: str | None
    first_touch_utm_medium: str | None
    first_touch_utm_campaign: str | None
    sessions: int
    revenue: float
    latest_user_id: str | None


class DailyMetricsList(BaseModel):
    data: list[DailyMetrics]


class ChannelList(BaseModel):
    data: list[ChannelDay]


class FunnelList(BaseModel):
    data: list[FunnelStep]


class ExperimentList(BaseModel):
    data: list[ExperimentVariant]


class SessionPage(BaseModel):
    data: list[Session]
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters) for the next page; null at the end."
    )


class VisitorResponse(BaseModel):
    data: Visitor


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable: see the README's error table.")
    message: str
    parameter: str | None = Field(default=None, description="The bad parameter, for a 400.")


class ErrorBody(BaseModel):
    error: ErrorDetail
