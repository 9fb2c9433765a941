-- Warehouse layout owned by the platform. Idempotent, applied at start-up (analytics-platform
-- migrate, dev, demo, tenants add) and recorded by its checksum in platform.warehouse_version:
-- runs only check that version, so no DDL ever runs beside their loads.
CREATE SCHEMA IF NOT EXISTS platform;
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS marts;

-- This warehouse's id, generated once. The Dagster instance records the id of the
-- warehouse its `tenants` partitions mirror and refuses syncs from any other
-- (tenants/store_binding.py). A restored copy keeps the id: it holds the same tenants.
CREATE TABLE IF NOT EXISTS platform.warehouse_identity (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    warehouse_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO platform.warehouse_identity DEFAULT VALUES ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS platform.tenants (
    tenant_id      text PRIMARY KEY CHECK (tenant_id ~ '^[a-z][a-z0-9_]{1,39}$'),
    display_name   text NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'active', 'suspended', 'deprovisioned')),
    api_base_url   text CHECK (api_base_url ~ '^https?://'),
    -- The NAME of the environment variable holding the API token, never the token.
    api_token_env  text CHECK (api_token_env ~ '^[A-Z_][A-Z0-9_]{0,127}$'),
    retention_days integer NOT NULL DEFAULT 400 CHECK (retention_days BETWEEN 1 AND 36500),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The sites each tenant owns: trackers name theirs in `siteId`/`site_id`, and an event
-- naming a site its tenant does not own is quarantined (`tenant_mismatch`). A site id
-- belongs to one tenant only. Every tenant owns its own id as its default site, which
-- events naming no site belong to; it cannot be removed.
CREATE TABLE IF NOT EXISTS platform.tenant_sites (
    site_id   text PRIMARY KEY CHECK (site_id ~ '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$'),
    tenant_id text NOT NULL REFERENCES platform.tenants (tenant_id),
    added_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tenant_sites_tenant_idx ON platform.tenant_sites (tenant_id);
-- Tenants registered before sites existed get their default site (once: a tenant that
-- has any site is left alone). Deprovisioning deletes a tenant's sites; a deprovisioned
-- tenant gets its default back only when it is registered again, not from this.
INSERT INTO platform.tenant_sites (site_id, tenant_id)
SELECT t.tenant_id, t.tenant_id FROM platform.tenants t
WHERE t.status <> 'deprovisioned'
  AND NOT EXISTS (SELECT 1 FROM platform.tenant_sites s WHERE s.tenant_id = t.tenant_id)
ON CONFLICT DO NOTHING;

-- API keys: trackers send a write key, the read API will take read keys. Only the key's
-- SHA-256 is stored, never the key: a key is 32 random bytes, so a fast hash is as safe
-- as a slow KDF (which guards low-entropy passwords against guessing). key_id is the
-- key's first characters, shown in listings so a person can tell keys apart. Kept on
-- deprovisioning (revoked then), so the audit of who used which key stays readable.
CREATE TABLE IF NOT EXISTS platform.tenant_keys (
    key_id       text PRIMARY KEY CHECK (key_id ~ '^apk_[wr]_[A-Za-z0-9_-]{6}$'),
    key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),
    tenant_id    text NOT NULL REFERENCES platform.tenants (tenant_id),
    kind         text NOT NULL CHECK (kind IN ('write', 'read')),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by   text NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   text,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE UNIQUE INDEX IF NOT EXISTS tenant_keys_hash_idx ON platform.tenant_keys (key_hash);
CREATE INDEX IF NOT EXISTS tenant_keys_tenant_idx ON platform.tenant_keys (tenant_id);

-- The browser origins (scheme://host[:port], normalized) allowed to send a tenant's
-- events with CORS. A request without an Origin header is not a browser's and needs none.
CREATE TABLE IF NOT EXISTS platform.tenant_origins (
    tenant_id text NOT NULL REFERENCES platform.tenants (tenant_id),
    origin    text NOT NULL CHECK (origin ~ '^https?://[^/?#@*\s]+$'),
    added_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, origin)
);
CREATE INDEX IF NOT EXISTS tenant_origins_origin_idx ON platform.tenant_origins (origin);

-- Every lifecycle change of a tenant, kept after the tenant is deprovisioned.
CREATE TABLE IF NOT EXISTS platform.tenant_audit (
    audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL,
    action      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    actor       text NOT NULL DEFAULT current_user,
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS tenant_audit_tenant_idx ON platform.tenant_audit (tenant_id, audit_id);

-- ClickHouse migrations applied to each tenant's database.
CREATE TABLE IF NOT EXISTS platform.schema_versions (
    tenant_id  text NOT NULL,
    version    integer NOT NULL,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- Dead letters: every row that broke the event contract, with its original text.
CREATE TABLE IF NOT EXISTS platform.quarantine (
    quarantine_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      text NOT NULL,
    -- NULL for a whole landing folder refused before any day applies (landing_file_sensor).
    partition_date date,
    layer          text NOT NULL,
    source         text NOT NULL,
    source_line    integer NOT NULL,
    reason         text NOT NULL,
    detail         text NOT NULL,
    raw_text       text NOT NULL,
    run_id         text,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    reprocessed_at timestamptz
);
CREATE INDEX IF NOT EXISTS quarantine_slice_idx
    ON platform.quarantine (tenant_id, partition_date, layer);
-- A landing path refused unread (a symlink, a FIFO) is reported once, whoever sees it.
CREATE UNIQUE INDEX IF NOT EXISTS quarantine_refused_path_once
    ON platform.quarantine (source, reason)
    WHERE layer = 'landing_zone' AND reprocessed_at IS NULL;

-- Which version of each landing file the raw layer last loaded: the landing sensor
-- skips a file already loaded as it is now (size and mtime unchanged).
CREATE TABLE IF NOT EXISTS platform.landing_files (
    source         text PRIMARY KEY,
    tenant_id      text NOT NULL,
    partition_date date NOT NULL,
    size_bytes     bigint NOT NULL,
    mtime_ns       bigint NOT NULL,
    run_id         text,
    loaded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS landing_files_slice_idx
    ON platform.landing_files (tenant_id, partition_date);

-- Fields outside the event contract that each tenant has sent (kept in properties),
-- with where each was first seen: schema drift is reported when a new one appears.
CREATE TABLE IF NOT EXISTS platform.tenant_fields (
    tenant_id         text NOT NULL,
    field             text NOT NULL,
    first_seen_date   date NOT NULL,
    first_seen_source text NOT NULL,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, field)
);

CREATE TABLE IF NOT EXISTS raw.file_events (
    event_id        text NOT NULL,
    tenant_id       text NOT NULL,
    site_id         text,  -- NULL only in rows loaded before sites existed
    event_type      text NOT NULL,
    event_name      text,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz,  -- the collector's receive time (receivedAt), else NULL
    visitor_id      text NOT NULL,
    user_id         text,
    session_hint    text,
    url             text,
    path            text,
    referrer        text,
    utm_source      text,
    utm_medium      text,
    utm_campaign    text,
    utm_term        text,
    utm_content     text,
    experiment_id   text,
    variant         text,
    revenue         numeric(18, 4),
    currency        text,
    properties      jsonb NOT NULL DEFAULT '{}'::jsonb,
    _partition_date date NOT NULL,
    _source         text NOT NULL,
    _source_line    integer NOT NULL,
    _ingested_at    timestamptz NOT NULL DEFAULT now(),
    _run_id         text
);
CREATE INDEX IF NOT EXISTS file_events_slice_idx ON raw.file_events (tenant_id, _partition_date);
ALTER TABLE raw.file_events ADD COLUMN IF NOT EXISTS site_id text;
-- Warehouses from before the collector: events loaded then have no receive time.
ALTER TABLE raw.file_events ADD COLUMN IF NOT EXISTS received_at timestamptz;

-- Events from the tenants' HTTP export APIs (raw_api_events): the same columns as
-- raw.file_events; _source is the page URL and _source_line the event's position in it.
-- LIKE keeps the two raw tables' columns from ever drifting apart.
CREATE TABLE IF NOT EXISTS raw.api_events (LIKE raw.file_events INCLUDING DEFAULTS);
CREATE INDEX IF NOT EXISTS api_events_slice_idx ON raw.api_events (tenant_id, _partition_date);
ALTER TABLE raw.api_events ADD COLUMN IF NOT EXISTS site_id text;
ALTER TABLE raw.api_events ADD COLUMN IF NOT EXISTS received_at timestamptz;

-- How far raw_api_events has read each tenant-day's export: the next run resumes from
-- resume_cursor (NULL: it reloads the whole day). Written in the load's transaction.
CREATE TABLE IF NOT EXISTS platform.api_watermarks (
    tenant_id      text NOT NULL,
    partition_date date NOT NULL,
    resume_cursor  text,
    last_event_at  timestamptz,                -- latest occurred_at loaded for the day
    complete       boolean NOT NULL,           -- false: a malformed page stopped the last run
    pages          integer NOT NULL,           -- pages the last run read
    -- Rows the day holds in raw.api_events; if they differ (retention, deprovisioning),
    -- the next run reloads the whole day instead of resuming.
    rows_loaded    bigint NOT NULL,
    run_id         text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition_date)
);

-- Tenant-days held back by a failed blocking check of a layer, until a run of that
-- tenant-day passes that layer's checks again. The runs of neighbouring days, which
-- refresh a day's sessions and serve it again (sessions cross midnight), leave a held
-- day's marts and ClickHouse partitions as they were instead of publishing it.
CREATE TABLE IF NOT EXISTS platform.held_slices (
    tenant_id      text NOT NULL,
    partition_date date NOT NULL,
    layer          text NOT NULL,
    checks         text NOT NULL,
    run_id         text,
    held_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, partition_date, layer)
);

-- Indexes two dbt models gained after warehouses had built them (README "A day's build
-- as history grows"): dbt creates a model's indexes only with its table, so a table
-- built before gets them here, once. A table without the index (checked by its columns,
-- whatever dbt named it) gains one; a fresh warehouse has no such table yet.
DO $$
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT * FROM (VALUES
            ('staging.stg_events', ARRAY['tenant_id', 'visitor_id', 'site_id', 'event_date']),
            ('marts.fct_sessions', ARRAY['tenant_id', 'visitor_id'])
        ) AS w (relation, columns)
    LOOP
        IF to_regclass(wanted.relation) IS NOT NULL AND NOT EXISTS (
            SELECT 1
            FROM pg_index AS i
            WHERE i.indrelid = to_regclass(wanted.relation)
              AND ARRAY(
                  SELECT a.attname::text
                  FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, position)
                  JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                  ORDER BY k.position
              ) = wanted.columns
        ) THEN
            EXECUTE format(
                'CREATE INDEX ON %s (%s)',
                wanted.relation,
                (SELECT string_agg(quote_ident(c), ', ') FROM unnest(wanted.columns) AS c)
            );
        END IF;
    END LOOP;
END
$$;
