-- Runs once, when the postgres service starts on an EMPTY data volume
-- (docker-entrypoint-initdb.d). It creates the two databases the platform uses:
--   analytics: the warehouse (DATABASE_URL: raw tables and dbt models)
--   dagster:   Dagster's runs, event logs and schedules (DAGSTER_POSTGRES_URL)
-- On an existing volume it does not run again; create missing databases by hand
-- or remove the volume (`docker compose down -v` deletes all data).
CREATE DATABASE analytics;
CREATE DATABASE dagster;
