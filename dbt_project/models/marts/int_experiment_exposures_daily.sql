{#
  Per tenant, day, experiment and visitor: the visitor's first exposure that day
  and the variants seen. fct_experiment_results sums these rows (a visitor-day
  each) instead of rereading the tenant's events: rebuilding any day replaces
  that day's rows, and the results summed from them are again exact.
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
    experiment_id,
    visitor_id,
    min(occurred_at) as first_exposed_at,
    -- The day's first exposure, ties broken by event id (as across days).
    (array_agg(event_id order by occurred_at, event_id))[1] as first_event_id,
    (array_agg(variant order by occurred_at, event_id))[1] as first_variant,
    -- The visitor saw more than one variant iff the least and greatest differ.
    min(variant) as least_variant,
    max(variant) as greatest_variant
from {{ ref('stg_events') }}
where {{ aggregate_slice('event_date') }}
    and experiment_id is not null
    and variant is not null
group by tenant_id, event_date, experiment_id, visitor_id
