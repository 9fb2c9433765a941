{#
  Per tenant, day and visitor with a signup or purchase that day: the latest
  one. fct_experiment_results takes a visitor's latest conversion from these
  rows (at most one a visitor-day) instead of from the tenant's events.
#}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date') }}",
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

select
    tenant_id,
    event_date,
    visitor_id,
    max(occurred_at) as last_converted_at
from {{ ref('stg_events') }}
where {{ aggregate_slice('event_date') }}
    and event_type in ('signup', 'purchase')
group by tenant_id, event_date, visitor_id
