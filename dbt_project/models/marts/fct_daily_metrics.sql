{#
  Headline numbers per tenant, day and site. Rebuilt for [S-1, E+1] like
  fct_sessions, because loading a day can change the sessions of the days
  around it. Event counts come from the events sent from the site that day;
  session counts from the sessions whose first event is the site's. A visitor
  is new on a site on the first day they appear on that site, so each row
  adds up (new + returning = visitors) and sums over sites count a visitor
  once per site.
#}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date', refresh_neighbours=true) }}",
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

with events as (
    select tenant_id, event_date, {{ site_of() }} as site_id, visitor_id, user_id, event_type, revenue
    from {{ ref('stg_events') }}
    where {{ refreshed_slice('tenant_id', 'event_date') }}
),

new_on_day as (
    -- A visitor is new on a site on the first day they appear there in the tenant's
    -- history: no event of theirs on the site on an earlier day (one probe of
    -- stg_events' (tenant_id, visitor_id, site_id, event_date) index per visitor-day,
    -- not a read of the tenant's history). Staging already gives every event a site.
    select distinct seen.tenant_id, seen.event_date, seen.site_id, seen.visitor_id
    from events as seen
    where not exists (
        select 1
        from {{ ref('stg_events') }} as earlier
        where earlier.tenant_id = seen.tenant_id
            and earlier.visitor_id = seen.visitor_id
            and earlier.site_id = seen.site_id
            and earlier.event_date < seen.event_date
    )
),

daily_events as (
    select
        e.tenant_id,
        e.event_date,
        e.site_id,
        count(distinct e.visitor_id) as visitors,
        count(distinct n.visitor_id) as new_visitors,
        count(distinct e.user_id) as identified_users,
        count(*) filter (where e.event_type = 'page_view') as page_views,
        count(*) as events,
        coalesce(sum(e.revenue) filter (where e.event_type = 'purchase'), 0) as revenue
    from events as e
    left join new_on_day as n using (tenant_id, event_date, site_id, visitor_id)
    group by e.tenant_id, e.event_date, e.site_id
),

daily_sessions as (
    select
        tenant_id,
        session_date as event_date,
        site_id,
        count(*) as sessions,
        count(*) filter (where is_bounce) as bounces,
        avg(duration_seconds) as average_session_seconds,
        count(*) filter (where converted) as conversions
    from {{ ref('fct_sessions') }}
    where {{ refreshed_slice('tenant_id', 'session_date') }}
    group by tenant_id, session_date, site_id
)

-- A full join: a session's first event may sit in the next day's folder (late
-- delivery), leaving its site no events in the day the session starts; the
-- session still counts there, so sessions here sum to fct_sessions'.
select
    tenant_id,
    event_date,
    site_id,
    coalesce(d.visitors, 0) as visitors,
    coalesce(d.new_visitors, 0) as new_visitors,
    coalesce(d.visitors - d.new_visitors, 0) as returning_visitors,
    coalesce(d.identified_users, 0) as identified_users,
    coalesce(s.sessions, 0) as sessions,
    coalesce(d.page_views, 0) as page_views,
    coalesce(d.events, 0) as events,
    round(coalesce(s.bounces::numeric / nullif(s.sessions, 0), 0), 4) as bounce_rate,
    round(coalesce(s.average_session_seconds, 0), 1) as average_session_seconds,
    coalesce(s.conversions, 0) as conversions,
    round(coalesce(s.conversions::numeric / nullif(s.sessions, 0), 0), 4) as conversion_rate,
    coalesce(d.revenue, 0) as revenue
from daily_events as d
full join daily_sessions as s using (tenant_id, event_date, site_id)
