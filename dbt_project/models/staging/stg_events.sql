{#- Indexed by visitor, site and day too: fct_daily_metrics asks whether a visitor was
    on a site before a day (a probe, not a read of the tenant's history). -#}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date') }}",
    indexes=[
      {'columns': ['tenant_id', 'event_date']},
      {'columns': ['tenant_id', 'event_id']},
      {'columns': ['tenant_id', 'visitor_id', 'site_id', 'event_date']},
    ],
  )
}}

{#- Both raw tables carry the contract columns; naming them keeps the union
    independent of column order. #}
{%- set raw_columns = [
    'event_id', 'tenant_id', 'event_type', 'event_name', 'occurred_at', 'visitor_id',
    'user_id', 'session_hint', 'url', 'path', 'referrer', 'utm_source', 'utm_medium',
    'utm_campaign', 'utm_term', 'utm_content', 'experiment_id', 'variant', 'revenue',
    'currency', 'properties', 'site_id', '_partition_date', '_source', '_source_line', '_ingested_at',
] %}

with slice as (
    {% for raw_table in ['file_events', 'api_events'] -%}
    select {{ raw_columns | join(', ') }}
    from {{ source('raw', raw_table) }}
    where {{ tenant_day_filter('tenant_id', '_partition_date') }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

ranked as (
    -- A tracker may deliver an event twice within a day: keep its first delivery.
    select
        *,
        row_number() over (
            partition by tenant_id, _partition_date, event_id
            order by _source, _source_line
        ) as delivery_rank
    from slice
)

select
    tenant_id,
    event_id,
    _partition_date as event_date,
    event_type,
    coalesce(event_name, event_type) as event_name,
    occurred_at,
    visitor_id,
    user_id,
    session_hint,
    url,
    path,
    nullif(referrer, '') as referrer,
    lower(utm_source) as utm_source,
    lower(utm_medium) as utm_medium,
    utm_campaign,
    utm_term,
    utm_content,
    experiment_id,
    variant,
    revenue,
    upper(currency) as currency,
    properties,
    -- Rows loaded before sites existed belong to the tenant's default site.
    {{ site_of() }} as site_id,
    _source as source_file,
    _source_line as source_line,
    _ingested_at as ingested_at
from ranked
where delivery_rank = 1
{% if is_incremental() %}
    -- Delivered again on a later day: the earlier day keeps it (index on tenant_id, event_id).
    and not exists (
        select 1 from {{ this }} as earlier
        where earlier.tenant_id = ranked.tenant_id
            and earlier.event_id = ranked.event_id
            and earlier.event_date < ranked._partition_date
    )
{% endif %}
