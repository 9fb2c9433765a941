{#
  Sessions, owned by the day they start. A run for days [S, E] rebuilds the
  sessions starting in [S-1, E+1] from the events of [S-2, E+2]: a session
  from 23:50 to 00:20 is one session of its first day whichever of the two days
  is loaded first, because loading either day rebuilds both. (Sessions are
  assumed to last under 24 hours.) How events form sessions, and the session
  id, are defined once in macros/sessionize.sql (fct_funnel_daily uses it too).
  Indexed by visitor too: dim_visitors reads the history of the visitors a run touches.
#}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('session_date', refresh_neighbours=true) }}",
    indexes=[
      {'columns': ['tenant_id', 'session_date']},
      {'columns': ['tenant_id', 'visitor_id']},
    ],
  )
}}

with events as (
    {{ sessionized_events(ref('stg_events')) }}
),

sessions as (
    select
        tenant_id,
        visitor_id,
        (array_agg(event_id order by occurred_at, event_id))[1] as first_event_id,
        -- The site of the first event; a row staged before sites existed has none.
        (array_agg({{ site_of() }} order by occurred_at, event_id))[1] as site_id,
        min(occurred_at) as session_start,
        max(occurred_at) as session_end,
        (array_agg(user_id order by occurred_at desc, event_id desc)
            filter (where user_id is not null))[1] as user_id,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) as events,
        (array_agg(path order by occurred_at, event_id)
            filter (where event_type = 'page_view'))[1] as landing_path,
        (array_agg(path order by occurred_at desc, event_id desc)
            filter (where event_type = 'page_view'))[1] as exit_path,
        (array_agg(referrer order by occurred_at, event_id)
            filter (where event_type = 'page_view'))[1] as referrer,
        (array_agg(utm_source order by occurred_at, event_id)
            filter (where event_type = 'page_view'))[1] as utm_source,
        (array_agg(utm_medium order by occurred_at, event_id)
            filter (where event_type = 'page_view'))[1] as utm_medium,
        (array_agg(utm_campaign order by occurred_at, event_id)
            filter (where event_type = 'page_view'))[1] as utm_campaign,
        bool_or(event_type in ('signup', 'purchase')) as converted,
        coalesce(sum(revenue) filter (where event_type = 'purchase'), 0) as revenue
    from events
    group by {{ session_key() }}
),

final as (
select
    tenant_id,
    {{ session_id('tenant_id', 'first_event_id', 'session_start') }} as session_id,
    (session_start at time zone 'UTC')::date as session_date,
    site_id,
    visitor_id,
    user_id,
    session_start,
    session_end,
    extract(epoch from session_end - session_start)::integer as duration_seconds,
    page_views,
    events,
    landing_path,
    exit_path,
    referrer,
    utm_source,
    utm_medium,
    utm_campaign,
    {{ default_channel('utm_source', 'utm_medium', 'referrer') }} as channel,
    page_views = 1 and not converted as is_bounce,
    converted,
    revenue
from sessions
)

select * from final
where {{ refreshed_slice('tenant_id', 'session_date') }}
