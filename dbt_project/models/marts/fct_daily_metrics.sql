{#
  Headline numbers per tenant-day. Rebuilt for [S-1, E+1] like fct_sessions,
  because loading a day can change the sessions of the days around it.
#}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date', refresh_neighbours=true) }}",
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

with events as (
    select tenant_id, event_date, visitor_id, user_id, event_type, revenue
    from {{ ref('stg_events') }}
    where {{ refreshed_slice('tenant_id', 'event_date') }}
),

first_seen as (
    -- A visitor is new on the first day they appear in the tenant's history.
    select history.tenant_id, history.visitor_id, min(history.event_date) as first_day
    from {{ ref('stg_events') }} as history
    inner join (select distinct tenant_id, visitor_id from events) as seen
        using (tenant_id, visitor_id)
    where {{ tenant_filter('history.tenant_id') }}
    group by history.tenant_id, history.visitor_id
),

daily_events as (
    select
        e.tenant_id,
        e.event_date,
        count(distinct e.visitor_id) as visitors,
        count(distinct e.visitor_id) filter (where f.first_day = e.event_date) as new_visitors,
        count(distinct e.user_id) as identified_users,
        count(*) filter (where e.event_type = 'page_view') as page_views,
        count(*) as events,
        coalesce(sum(e.revenue) filter (where e.event_type = 'purchase'), 0) as revenue
    from events as e
    inner join first_seen as f using (tenant_id, visitor_id)
    group by e.tenant_id, e.event_date
),

daily_sessions as (
    select
        tenant_id,
        session_date as event_date,
        count(*) as sessions,
        count(*) filter (where is_bounce) as bounces,
        avg(duration_seconds) as average_session_seconds,
        count(*) filter (where converted) as conversions
    from {{ ref('fct_sessions') }}
    where {{ refreshed_slice('tenant_id', 'session_date') }}
    group by tenant_id, session_date
)

select
    d.tenant_id,
    d.event_date,
    d.visitors,
    d.new_visitors,
    d.visitors - d.new_visitors as returning_visitors,
    d.identified_users,
    coalesce(s.sessions, 0) as sessions,
    d.page_views,
    d.events,
    round(coalesce(s.bounces::numeric / nullif(s.sessions, 0), 0), 4) as bounce_rate,
    round(coalesce(s.average_session_seconds, 0), 1) as average_session_seconds,
    coalesce(s.conversions, 0) as conversions,
    round(coalesce(s.conversions::numeric / nullif(s.sessions, 0), 0), 4) as conversion_rate,
    d.revenue
from daily_events as d
left join daily_sessions as s using (tenant_id, event_date)
