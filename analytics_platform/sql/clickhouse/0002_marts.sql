-- The daily metrics gained columns; sessions and channels are served too.
ALTER TABLE {database}.fct_daily_metrics
    ADD COLUMN IF NOT EXISTS new_visitors UInt64 AFTER visitors,
    ADD COLUMN IF NOT EXISTS returning_visitors UInt64 AFTER new_visitors,
    ADD COLUMN IF NOT EXISTS identified_users UInt64 AFTER returning_visitors,
    ADD COLUMN IF NOT EXISTS bounce_rate Float64 AFTER events,
    ADD COLUMN IF NOT EXISTS average_session_seconds Float64 AFTER bounce_rate,
    ADD COLUMN IF NOT EXISTS conversions UInt64 AFTER average_session_seconds,
    ADD COLUMN IF NOT EXISTS conversion_rate Float64 AFTER conversions,
    ADD COLUMN IF NOT EXISTS revenue Float64 AFTER conversion_rate;

CREATE TABLE IF NOT EXISTS {database}.fct_sessions (
    tenant_id        LowCardinality(String),
    session_id       String,
    session_date     Date,
    visitor_id       String,
    user_id          Nullable(String),
    session_start    DateTime64(3, 'UTC'),
    session_end      DateTime64(3, 'UTC'),
    duration_seconds UInt32,
    page_views       UInt32,
    events           UInt32,
    landing_path     Nullable(String),
    exit_path        Nullable(String),
    referrer         Nullable(String),
    utm_source       Nullable(String),
    utm_medium       Nullable(String),
    utm_campaign     Nullable(String),
    channel          LowCardinality(String),
    is_bounce        Bool,
    converted        Bool,
    revenue          Float64,
    _loaded_at       DateTime64(3, 'UTC')
) ENGINE = MergeTree
PARTITION BY session_date
ORDER BY (session_date, visitor_id, session_start);

CREATE TABLE IF NOT EXISTS {database}.fct_channel_daily (
    tenant_id       LowCardinality(String),
    event_date      Date,
    channel         LowCardinality(String),
    sessions        UInt64,
    visitors        UInt64,
    conversions     UInt64,
    conversion_rate Float64,
    revenue         Float64,
    _loaded_at      DateTime64(3, 'UTC')
) ENGINE = MergeTree
PARTITION BY event_date
ORDER BY (event_date, channel);
