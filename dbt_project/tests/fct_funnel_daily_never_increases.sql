-- A funnel step never has more visitors or sessions than the step before it.
select tenant_id, event_date, step_number, visitors, previous_visitors
from (
    select
        tenant_id,
        event_date,
        step_number,
        visitors,
        sessions,
        lag(visitors) over day_funnel as previous_visitors,
        lag(sessions) over day_funnel as previous_sessions
    from {{ ref('fct_funnel_daily') }}
    -- The run's tenant-days only (see macros/test_slice.sql).
    where {{ tenant_day_filter('tenant_id', 'event_date') }}
    window day_funnel as (partition by tenant_id, event_date order by step_number)
) as steps
where visitors > previous_visitors or sessions > previous_sessions
