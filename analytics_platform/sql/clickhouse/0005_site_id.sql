-- Sites: sessions and daily metrics name the site (daily metrics gain it in their grain,
-- one row per day and site). Rows served before sites existed were the default site's,
-- the tenant's own id: the DEFAULT gives them exactly that on read, with no rewrite.
-- The sorting keys stay: a day holds one row per site, so sorting within the day
-- partition by site would buy nothing, and changing a key would need a new table.
ALTER TABLE {database}.fct_daily_metrics
    ADD COLUMN IF NOT EXISTS site_id LowCardinality(String) DEFAULT tenant_id AFTER event_date;

ALTER TABLE {database}.fct_sessions
    ADD COLUMN IF NOT EXISTS site_id LowCardinality(String) DEFAULT tenant_id AFTER session_date;
