{# Sessions, visitors, conversions and revenue per tenant-day and default channel. #}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date', refresh_neighbours=true) }}",
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

select
    tenant_id,
    session_date as event_date,
    channel,
    count(*) as sessions,
    count(distinct visitor_id) as visitors,
    count(*) filter (where converted) as conversions,
    round(count(*) filter (where converted)::numeric / count(*), 4) as conversion_rate,
    sum(revenue) as revenue
from {{ ref('fct_sessions') }}
where {{ refreshed_slice('tenant_id', 'session_date') }}
group by tenant_id, session_date, channel
