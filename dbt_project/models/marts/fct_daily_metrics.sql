{{
  config(
    pre_hook="{{ delete_tenant_day_slice('event_date') }}",
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

with events as (
    select tenant_id, event_date, event_id, event_type, visitor_id, session_hint, occurred_at
    from {{ ref('stg_events') }}
    where {{ tenant_day_filter('tenant_id', 'event_date') }}
),

ordered as (
    select
        *,
        lag(occurred_at) over visitor_timeline as previous_at,
        lag(session_hint) over visitor_timeline as previous_hint
    from events
    window visitor_timeline as (
        partition by tenant_id, event_date, visitor_id order by occurred_at, event_id
    )
),

session_starts as (
    -- A session starts at a visitor's first event, when the client's session hint
    -- changes, or after a gap longer than the timeout (a gap equal to it stays in).
    select
        *,
        previous_at is null
        or session_hint is distinct from previous_hint
        or occurred_at - previous_at
            > make_interval(mins => {{ var('session_timeout_minutes') }}) as starts_session
    from ordered
)

select
    tenant_id,
    event_date,
    count(distinct visitor_id) as visitors,
    count(*) filter (where starts_session) as sessions,
    count(*) filter (where event_type = 'page_view') as page_views,
    count(*) as events
from session_starts
group by tenant_id, event_date
