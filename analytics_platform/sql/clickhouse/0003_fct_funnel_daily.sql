CREATE TABLE IF NOT EXISTS {database}.fct_funnel_daily (
    tenant_id                LowCardinality(String),
    event_date               Date,
    step_number              UInt8,
    step_name                LowCardinality(String),
    sessions                 UInt64,
    visitors                 UInt64,
    conversion_from_previous Nullable(Float64),
    conversion_from_first    Nullable(Float64),
    _loaded_at               DateTime64(3, 'UTC')
) ENGINE = MergeTree
PARTITION BY event_date
ORDER BY (event_date, step_number);
