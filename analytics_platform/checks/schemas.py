"""Pandera models of each layer's rows: what a good tenant-day slice looks like.

Each model is validated against the slice a run just built (see
`checks/validation.py`). Models named `*Expectations` hold the rules real data
may bend (severity WARN, they report); the others are hard rules (severity
ERROR, they block the layers below).

Only what dbt cannot express lives here: raw (which dbt does not build), the
partition-day window (it depends on the loader's tolerance) and thresholds such
as `mostly`. Keys, not null, accepted values and row-level ranges of staging and
the marts are dbt tests in their YAML, checked once there.
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
    """`staging.stg_events`: every event inside its partition day."""

    # Keys, not null, patterns and revenue >= 0 are dbt tests (stg_events.yml); the
    # window depends on the loader's tolerance, which only the run knows.
    occurred_at: Series[UtcTimestamp] = pa.Field(nullable=True)
    window_start: Series[UtcTimestamp]
    window_end: Series[UtcTimestamp]

    class Config:
        coerce = True
        strict = False

    @pa.dataframe_check(name="occurred_at_inside_partition_day")
    def occurred_at_inside_partition_day(cls, df: pd.DataFrame) -> pd.Series:
        return _inside_window(df)


class StgEventsExpectations(pa.DataFrameModel):
    """What real tracker data mostly looks like; a slice may bend these (WARN)."""

    event_type: Series[str] = pa.Field(nullable=True)
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
