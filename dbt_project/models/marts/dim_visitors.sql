{#
  One row per tenant and visitor. A run recomputes, from their whole history,
  the visitors with a session in the days it rebuilds, before or after the
  rebuild (macros/tenant_day_slice.sql touched_visitors); the history is read
  through fct_sessions' (tenant_id, visitor_id) index, never the tenant's all.
#}
{{
  config(
    pre_hook="{{ delete_touched_visitors() }}",
    indexes=[{'columns': ['tenant_id', 'visitor_id'], 'unique': true}],
  )
}}

with touched as (
    {{ touched_visitors() }}
),

history as (
    select s.*
    from {{ ref('fct_sessions') }} as s
    inner join touched using (tenant_id, visitor_id)
    where {{ tenant_filter('s.tenant_id') }}
)

select
    tenant_id,
    visitor_id,
    min(session_start) as first_seen_at,
    max(session_end) as last_seen_at,
    (array_agg(channel order by session_start))[1] as first_touch_channel,
    (array_agg(utm_source order by session_start))[1] as first_touch_utm_source,
    (array_agg(utm_medium order by session_start))[1] as first_touch_utm_medium,
    (array_agg(utm_campaign order by session_start))[1] as first_touch_utm_campaign,
    count(*) as sessions,
    sum(revenue) as revenue,
    (array_agg(user_id order by session_start desc) filter (where user_id is not null))[1]
        as latest_user_id
from history
group by tenant_id, visitor_id
