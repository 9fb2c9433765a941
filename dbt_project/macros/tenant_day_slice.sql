{#
  The tenant-day slice a run rebuilds, from the vars Dagster passes:
  tenants (list of ids) x [start_date, end_date]. With no vars, every row.
  Ids and dates are validated here too, so nothing unchecked reaches SQL.
  days_before / days_after widen the date range: a session may cross midnight,
  so building a day refreshes the sessions of its neighbours too.
#}
{% macro slice_tenants() -%}
    {%- set tenants = slice_var('tenants') -%}
    {%- if tenants is string or tenants | length == 0 -%}
        {{ exceptions.raise_compiler_error("var 'tenants' must be a non-empty list of tenant ids") }}
    {%- endif -%}
    {%- for tenant in tenants -%}
        {%- if not modules.re.fullmatch('[a-z][a-z0-9_]{1,39}', tenant | string) -%}
            {{ exceptions.raise_compiler_error("invalid tenant id in var 'tenants': " ~ tenant) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(tenants) }}
{%- endmacro %}

{# Only the tenant part of the slice, for models that read a tenant's whole history. #}
{% macro tenant_filter(tenant_column='tenant_id') -%}
    {%- if slice_var('tenants') is none -%}
        true
    {%- else -%}
        {{ tenant_column }} in ({% for tenant in slice_tenants() %}'{{ tenant }}'{{ ", " if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}

{% macro tenant_day_filter(tenant_column='tenant_id', date_column='event_date', days_before=0, days_after=0) -%}
    {%- if slice_var('tenants') is none -%}
        true
    {%- else -%}
        {%- set start_date = modules.datetime.date.fromisoformat(slice_var('start_date') | string)
            - modules.datetime.timedelta(days=days_before) -%}
        {%- set end_date = modules.datetime.date.fromisoformat(slice_var('end_date') | string)
            + modules.datetime.timedelta(days=days_after) -%}
        {{ tenant_filter(tenant_column) }}
        and {{ date_column }} between '{{ start_date }}'::date and '{{ end_date }}'::date
    {%- endif -%}
{%- endmacro %}

{#
  The days a marts run rebuilds: its own and their neighbours (a session crossing
  midnight belongs to the day it starts), less the neighbours held back by a failed
  blocking check (var 'held', "tenant|YYYY-MM-DD" items, see checks/holds.py): those
  keep the rows they have until a run of their own passes.
#}
{% macro refreshed_slice(tenant_column='tenant_id', date_column='event_date') -%}
    {{ tenant_day_filter(tenant_column, date_column, days_before=1, days_after=1) }}
    and {{ not_held(tenant_column, date_column) }}
{%- endmacro %}

{% macro not_held(tenant_column, date_column) -%}
    {%- set held = slice_var('held') or [] -%}
    {%- if held | length == 0 -%}
        true
    {%- else -%}
        {%- for item in held -%}
            {%- if not modules.re.fullmatch('[a-z][a-z0-9_]{1,39}[|][0-9]{4}-[0-9]{2}-[0-9]{2}', item | string) -%}
                {{ exceptions.raise_compiler_error("invalid item in var 'held': " ~ item) }}
            {%- endif -%}
        {%- endfor -%}
        ({{ tenant_column }} || '|' || {{ date_column }}::text) not in ({% for item in held %}'{{ item }}'{{ ", " if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}

{# pre_hook of incremental models: clear the slice, in the same transaction as the insert. #}
{% macro delete_tenant_day_slice(date_column='event_date', refresh_neighbours=false) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where {{ refreshed_slice('tenant_id', date_column) if refresh_neighbours
                 else tenant_day_filter('tenant_id', date_column) }}
    {%- endif -%}
{%- endmacro %}

{# pre_hook of dim_visitors: drop the visitors the run recomputes. #}
{% macro delete_touched_visitors() -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where (tenant_id, visitor_id) in ({{ touched_visitors() }})
    {%- endif -%}
{%- endmacro %}

{#
  The visitors dim_visitors recomputes: those with a session in the days the run
  rebuilds, now (fct_sessions) and before the rebuild (int_visitor_days, built
  after dim_visitors, so still as the last build left it). A visitor whose
  sessions left a rebuilt day (a replaced file) is recomputed, or dropped.
  int_visitor_days is looked up, not ref'd: a ref would build it first. Its columns
  are qualified because dagster-dbt's column lineage knows the schema of ref'd
  relations only: an unqualified column of this one cannot be resolved, and the
  model's whole lineage would be dropped.
#}
{% macro touched_visitors() -%}
    {%- set before = adapter.get_relation(this.database, this.schema, 'int_visitor_days') if execute else none -%}
    select distinct tenant_id, visitor_id from {{ ref('fct_sessions') }}
    where {{ refreshed_slice('tenant_id', 'session_date') }}
    {%- if before is not none %}
    union
    select before_rebuild.tenant_id, before_rebuild.visitor_id from {{ before }} as before_rebuild
    where {{ refreshed_slice('before_rebuild.tenant_id', 'before_rebuild.session_date') }}
    {%- endif %}
{%- endmacro %}

{#
  Project-wide pre_hook (before each model's own): lock the run's tenants until the
  model's transaction commits. Two builds of one tenant (overlapping runs, or a dbt
  process orphaned by a killed run worker) then rewrite a model's slice one after the
  other, each seeing what the other committed, so a slice is never loaded twice.
  Different tenants never wait for each other. Tenants come sorted (no deadlock).
#}
{% macro lock_run_tenants() -%}
    {%- if slice_var('tenants') is not none -%}
        select pg_advisory_xact_lock(hashtext('dbt|' || tenant))
        from unnest(array[{% for tenant in slice_tenants() | sort %}'{{ tenant }}'{{ ", " if not loop.last }}{% endfor %}]::text[]) as tenant
    {%- endif -%}
{%- endmacro %}

{#
  The run's slice: Dagster sets ANALYTICS_PLATFORM_SLICE (JSON with tenants,
  start_date, end_date, held) for every partitioned build; a manual `dbt build`
  can pass the same names as --vars. Not --vars from Dagster: dbt re-parses the
  whole project whenever its vars change (every run), and an environment variable
  read only while executing (never while parsing) leaves partial parsing intact.
#}
{% macro slice_var(name) -%}
    {%- set raw = env_var('ANALYTICS_PLATFORM_SLICE', '') if execute else '' -%}
    {%- if raw -%}
        {{ return(fromjson(raw).get(name)) }}
    {%- endif -%}
    {{ return(var(name, none)) }}
{%- endmacro %}

{#
  The rows an aggregate model builds from (the per-day models that cumulative
  marts sum): the run's days once its table exists, every row on its first build.
  A deployment that had history before the model was added must aggregate all of
  it, not just the days of the run that happens to create the table.
#}
{% macro aggregate_slice(date_column='event_date', refresh_neighbours=false) -%}
    {%- if not is_incremental() -%}
        true
    {%- elif refresh_neighbours -%}
        {{ refreshed_slice('tenant_id', date_column) }}
    {%- else -%}
        {{ tenant_day_filter('tenant_id', date_column) }}
    {%- endif -%}
{%- endmacro %}
