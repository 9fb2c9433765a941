"""Pandera models of each layer's rows: what a good tenant-day slice looks like.

Each model is validated against the slice a run just built (see
`checks/validation.py`). Models named `*Expectations` hold the rules real data
may bend (severity WARN, they report); the others are hard rules (severity
ERROR, they block the layers below).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from analytics_platform.ingest.contract import EVENT_TYPE_PATTERN

UtcTimestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]

# The event types trackers commonly send; a tenant may send others (WARN only).
KNOWN_EVENT_TYPES = (
    "page_view",
    "screen_view",
    "click",
    "scroll",
    "search",
    "form_submit",
    "signup",
    "login",
    "logout",
    "add_to_cart",
    "checkout",
    "purchase",
    "experiment_exposure",
    "identify",
)
CHANNELS = (
    "direct",
    "organic search",
    "paid search",
    "social",
    "email",
    "referral",
    "display",
    "other",
)
MOSTLY = 0.95


def mostly(rule: Callable[[pd.Series], pd.Series], fraction: float = MOSTLY):
    """A rule that passes when at least `fraction` of the rows satisfy it.

    When it fails, the rows that broke it are the failure cases, so the
    samples show them (a single False would say nothing).
    """

    def check(series: pd.Series) -> pd.Series:
        satisfied = rule(series)
        if len(satisfied) == 0 or satisfied.mean() >= fraction:
            return pd.Series(True, index=series.index)
        return satisfied

    return check


def _inside_window(df: pd.DataFrame) -> pd.Series:
    """occurred_at within the row's partition day, widened by the loader's tolerance."""
    return (df["occurred_at"] >= df["window_start"]) & (df["occurred_at"] < df["window_end"])


class RawEvents(pa.DataFrameModel):
    """`raw.file_events` / `raw.api_events`: what the loader promises to have written."""

    event_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 4096})
    tenant_id: Series[str]
    event_type: Series[str] = pa.Field(str_matches=EVENT_TYPE_PATTERN.pattern)
    occurred_at: Series[UtcTimestamp]
    visitor_id: Series[str] = pa.Field(str_length={"min_value": 1})
    currency: Series[str] = pa.Field(nullable=True, str_matches=r"^[A-Z]{3}$")
    revenue: Series[float] = pa.Field(nullable=True, gt=-1e14, lt=1e14)
    source_line: Series[int] = pa.Field(ge=1)
    window_start: Series[UtcTimestamp]
    window_end: Series[UtcTimestamp]

    class Config:
        coerce = True
        strict = False

    @pa.dataframe_check(name="occurred_at_inside_partition_day")
    def occurred_at_inside_partition_day(cls, df: pd.DataFrame) -> pd.Series:
        return _inside_window(df)


class StgEvents(pa.DataFrameModel):
    """`staging.stg_events`: typed, deduplicated, inside its day."""

    tenant_id: Series[str]
    event_id: Series[str] = pa.Field(str_length={"min_value": 1})
    event_type: Series[str] = pa.Field(str_matches=EVENT_TYPE_PATTERN.pattern)
    event_name: Series[str]
    occurred_at: Series[UtcTimestamp]
    visitor_id: Series[str] = pa.Field(str_length={"min_value": 1})
    site_id: Series[str] = pa.Field(str_length={"min_value": 1})
    revenue: Series[float] = pa.Field(nullable=True, ge=0)
    currency: Series[str] = pa.Field(nullable=True, str_matches=r"^[A-Z]{3}$")
    window_start: Series[UtcTimestamp]
    window_end: Series[UtcTimestamp]

    class Config:
        coerce = True
        strict = False
        unique = ["tenant_id", "event_id"]

    @pa.dataframe_check(name="occurred_at_inside_partition_day")
    def occurred_at_inside_partition_day(cls, df: pd.DataFrame) -> pd.Series:
        return _inside_window(df)


class StgEventsExpectations(pa.DataFrameModel):
    """What real tracker data mostly looks like; a slice may bend these (WARN)."""

    event_type: Series[str]
    session_hint: Series[str] = pa.Field(nullable=True)

    class Config:
        coerce = True
        strict = False

    @pa.check("event_type", name=f"mostly_known_event_types_{MOSTLY}")
    def mostly_known_event_types(cls, event_type: Series[str]) -> Series[bool]:
        return mostly(lambda s: s.isin(KNOWN_EVENT_TYPES))(event_type)

    @pa.check("session_hint", name=f"mostly_has_session_hint_{MOSTLY}")
    def mostly_has_session_hint(cls, session_hint: Series[str]) -> Series[bool]:
        return mostly(lambda s: s.notna())(session_hint)


class FctSessions(pa.DataFrameModel):
    tenant_id: Series[str]
    session_id: Series[str] = pa.Field(unique=True)
    site_id: Series[str]
    visitor_id: Series[str]
    session_start: Series[UtcTimestamp]
    session_end: Series[UtcTimestamp]
    duration_seconds: Series[float] = pa.Field(ge=0)
    page_views: Series[int] = pa.Field(ge=0)
    events: Series[int] = pa.Field(ge=1)
    channel: Series[str] = pa.Field(isin=CHANNELS)
    is_bounce: Series[bool]
    converted: Series[bool]
    revenue: Series[float] = pa.Field(ge=0)

    class Config:
        coerce = True
        strict = False

    @pa.dataframe_check(name="session_end_not_before_start")
    def session_end_not_before_start(cls, df: pd.DataFrame) -> pd.Series:
        return df["session_end"] >= df["session_start"]

    @pa.dataframe_check(name="page_views_within_events")
    def page_views_within_events(cls, df: pd.DataFrame) -> pd.Series:
        return df["page_views"] <= df["events"]


class FctDailyMetrics(pa.DataFrameModel):
    tenant_id: Series[str]
    site_id: Series[str]
    visitors: Series[int] = pa.Field(ge=0)
    new_visitors: Series[int] = pa.Field(ge=0)
    returning_visitors: Series[int] = pa.Field(ge=0)
    sessions: Series[int] = pa.Field(ge=0)
    events: Series[int] = pa.Field(ge=0)
    bounce_rate: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})
    conversion_rate: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 1}
    )
    revenue: Series[float] = pa.Field(ge=0)

    class Config:
        coerce = True
        strict = False
        unique = ["tenant_id", "event_date", "site_id"]

    @pa.dataframe_check(name="new_plus_returning_is_visitors")
    def new_plus_returning_is_visitors(cls, df: pd.DataFrame) -> pd.Series:
        return df["new_visitors"] + df["returning_visitors"] == df["visitors"]


class FctChannelDaily(pa.DataFrameModel):
    tenant_id: Series[str]
    channel: Series[str] = pa.Field(isin=CHANNELS)
    sessions: Series[int] = pa.Field(ge=1)
    conversion_rate: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    revenue: Series[float] = pa.Field(ge=0)

    class Config:
        coerce = True
        strict = False
        unique = ["tenant_id", "event_date", "channel"]


class FctFunnelDaily(pa.DataFrameModel):
    tenant_id: Series[str]
    step_number: Series[int] = pa.Field(ge=1)
    visitors: Series[int] = pa.Field(ge=0)
    conversion_from_previous: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 1}
    )
    conversion_from_first: Series[float] = pa.Field(
        nullable=True, in_range={"min_value": 0, "max_value": 1}
    )

    class Config:
        coerce = True
        strict = False
        unique = ["tenant_id", "event_date", "step_number"]

    @pa.dataframe_check(name="funnel_visitors_never_increase")
    def funnel_visitors_never_increase(cls, df: pd.DataFrame) -> pd.Series:
        ordered = df.sort_values(["tenant_id", "event_date", "step_number"])
        previous = ordered.groupby(["tenant_id", "event_date"])["visitors"].shift()
        return (previous.isna() | (ordered["visitors"] <= previous)).reindex(df.index)


class FctExperimentResults(pa.DataFrameModel):
    tenant_id: Series[str]
    experiment_id: Series[str]
    variant: Series[str]
    exposed_visitors: Series[int] = pa.Field(ge=1)
    converters: Series[int] = pa.Field(ge=0)
    conversion_rate: Series[float] = pa.Field(in_range={"min_value": 0, "max_value": 1})
    p_value: Series[float] = pa.Field(nullable=True, in_range={"min_value": 0, "max_value": 1})

    class Config:
        coerce = True
        strict = False
        unique = ["tenant_id", "experiment_id", "variant"]

    @pa.dataframe_check(name="converters_within_exposed")
    def converters_within_exposed(cls, df: pd.DataFrame) -> pd.Series:
        return df["converters"] <= df["exposed_visitors"]


class DimVisitors(pa.DataFrameModel):
    tenant_id: Series[str]
    visitor_id: Series[str]
    first_seen_at: Series[UtcTimestamp]
    last_seen_at: Series[UtcTimestamp]
    first_touch_channel: Series[str] = pa.Field(isin=CHANNELS)
    sessions: Series[int] = pa.Field(ge=1)
    revenue: Series[float] = pa.Field(ge=0)

    class Config:
        coerce = True
        strict = False
        unique = ["tenant_id", "visitor_id"]

    @pa.dataframe_check(name="last_seen_not_before_first_seen")
    def last_seen_not_before_first_seen(cls, df: pd.DataFrame) -> pd.Series:
        return df["last_seen_at"] >= df["first_seen_at"]
