CREATE TABLE IF NOT EXISTS {database}.fct_daily_metrics (
    tenant_id   LowCardinality(String),
    event_date  Date,
    visitors    UInt64,
    sessions    UInt64,
    page_views  UInt64,
    events      UInt64,
    _loaded_at  DateTime64(3, 'UTC')
) ENGINE = MergeTree
PARTITION BY event_date
ORDER BY event_date
