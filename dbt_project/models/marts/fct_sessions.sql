{#
  Sessions, owned by the day they start. A run for days [S, E] rebuilds the
  sessions starting in [S-1, E+1] from the events of [S-2, E+2]: a session
  from 23:50 to 00:20 is one session of its first day whichever of the two days
  is loaded first, because loading either day rebuilds both. (Sessions are
  assumed to last under 24 hours.)
#}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('session_date', refresh_neighbours=true) }}",
    indexes=[{'columns': ['tenant_id', 'session_date']}],
  )
}}

with events as (
    select *
    from {{ ref('stg_events') }}
    where {{ tenant_day_filter('tenant_id', 'event_date', days_before=2, days_after=2) }}
),

ordered as (
    select
        *,
        lag(occurred_at) over visitor_timeline as previous_at,
        lag(session_hint) over visitor_timeline as previous_hint
    from events
    window visitor_timeline as (partition by tenant_id, visitor_id order by occurred_at, event_id)
),

numbered as (
    -- A session starts at a visitor's first event, when the client's session hint
    -- changes, or after a gap longer than the timeout (a gap equal to it stays in).
    select
        *,
        sum(
            case
                when previous_at is null
                    or session_hint is distinct from previous_hint
                    or occurred_at - previous_at
                        > make_interval(mins => {{ var('session_timeout_minutes') }})
                then 1 else 0
            end
        ) over (
            partition by tenant_id, visitor_id order by occurred_at, event_id
            rows unbounded preceding
        ) as visit_number
    from ordered
),

sessions as (
    select
        tenant_id,
        visitor_id,
        visit_number,
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
    from numbered
    group by tenant_id, visitor_id, visit_number
),

final as (
select
    tenant_id,
    md5(tenant_id || '|' || visitor_id || '|' || session_start::text) as session_id,
    (session_start at time zone 'UTC')::date as session_date,
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
