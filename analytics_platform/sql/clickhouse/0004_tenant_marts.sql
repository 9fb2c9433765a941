-- Marts over a tenant's whole history: replaced as a whole (EXCHANGE TABLES) when served.
CREATE TABLE IF NOT EXISTS {database}.dim_visitors (
    tenant_id                LowCardinality(String),
    visitor_id               String,
    first_seen_at            DateTime64(3, 'UTC'),
    last_seen_at             DateTime64(3, 'UTC'),
    first_touch_channel      LowCardinality(String),
    first_touch_utm_source   Nullable(String),
    first_touch_utm_medium   Nullable(String),
    first_touch_utm_campaign Nullable(String),
    sessions                 UInt64,
    revenue                  Float64,
    latest_user_id           Nullable(String),
    _loaded_at               DateTime64(3, 'UTC')
) ENGINE = MergeTree
ORDER BY visitor_id;

CREATE TABLE IF NOT EXISTS {database}.fct_experiment_results (
    tenant_id         LowCardinality(String),
    experiment_id     String,
    variant           String,
    is_control        Bool,
    exposed_visitors  UInt64,
    converters        UInt64,
    conversion_rate   Float64,
    switched_visitors UInt64,
    first_exposed_at  DateTime64(3, 'UTC'),
    uplift            Nullable(Float64),
    z_score           Nullable(Float64),
    p_value           Nullable(Float64),
    _loaded_at        DateTime64(3, 'UTC')
) ENGINE = MergeTree
ORDER BY (experiment_id, variant);
