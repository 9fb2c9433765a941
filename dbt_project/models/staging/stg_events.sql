{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date') }}",
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

with slice as (
    select *
    from {{ source('raw', 'file_events') }}
    where {{ tenant_day_filter('tenant_id', '_partition_date') }}
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
    _source as source_file,
    _source_line as source_line,
    _ingested_at as ingested_at
from ranked
where delivery_rank = 1
