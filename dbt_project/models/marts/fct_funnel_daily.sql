{#
  Ordered funnel per tenant-day over var('funnel_steps'): a visitor reaches
  step k on day D when one of their sessions starting on D has events of steps
  1..k in that order. Sessions come from fct_sessions (one definition of a
  session); like it, a run for days [S, E] rebuilds [S-1, E+1].
#}
{#- Hash joins only: Postgres underestimates the steps' CTEs (rows of a window
    filtered by event type) and, for a run of many days or tenants, nested-loops
    CTE scans into each other; a year of one tenant (550,000 events) ran over 20
    minutes instead of 3 s (benchmarks/scale_history.py). SET LOCAL ends with the
    model's transaction. -#}
{{
  config(
    pre_hook=[
      "{{ delete_tenant_day_slice('event_date', refresh_neighbours=true) }}",
      "set local enable_nestloop = off",
    ],
    indexes=[{'columns': ['tenant_id', 'event_date']}],
  )
}}

{%- set steps = var('funnel_steps') -%}
{%- if steps is string or steps | length == 0 -%}
    {{ exceptions.raise_compiler_error("var 'funnel_steps' must be a non-empty list of event types") }}
{%- endif -%}
{%- for step in steps -%}
    {%- if not modules.re.fullmatch('[a-z][a-z0-9_]{0,63}', step | string) -%}
        {{ exceptions.raise_compiler_error("var 'funnel_steps': " ~ step ~ " is not an event type (lowercase snake_case)") }}
    {%- endif -%}
{%- endfor -%}
{%- if steps | unique | list | length != steps | length -%}
    {{ exceptions.raise_compiler_error("var 'funnel_steps' names a step twice: " ~ steps | join(', ')) }}
{%- endif %}

with sessions as (
    select tenant_id, session_id, session_date, visitor_id, session_start, session_end
    from {{ ref('fct_sessions') }}
    where {{ refreshed_slice('tenant_id', 'session_date') }}
),

step_events as (
    -- Each event of those sessions, by the session it belongs to (macros/sessionize.sql,
    -- the definition fct_sessions aggregates): a visitor's sessions may overlap in time
    -- (two tabs, two client session ids), so a time range cannot tell them apart.
    select e.tenant_id, e.session_id, e.event_type, e.occurred_at
    from (
        select
            tenant_id,
            event_type,
            occurred_at,
            {{ session_id(
                'tenant_id',
                'first_value(event_id) over session_events',
                'first_value(occurred_at) over session_events'
            ) }} as session_id
        from ({{ sessionized_events(ref('stg_events')) }}) as sessionized
        window session_events as (partition by {{ session_key() }} order by occurred_at, event_id)
    ) as e
    inner join sessions as s
        on e.tenant_id = s.tenant_id
        and e.session_id = s.session_id
    where e.event_type in ({% for step in steps %}'{{ step }}'{{ ", " if not loop.last }}{% endfor %})
),

{% for step in steps %}
step_{{ loop.index }} as (
    -- The earliest {{ step }} of the session{{ " at or after step " ~ (loop.index - 1) ~ " was reached" if not loop.first }}:
    -- taking the earliest match at every step finds an ordered path whenever one exists.
    select e.tenant_id, e.session_id, min(e.occurred_at) as reached_at
    from step_events as e
    {%- if not loop.first %}
    inner join step_{{ loop.index - 1 }} as previous
        on e.tenant_id = previous.tenant_id
        and e.session_id = previous.session_id
        and e.occurred_at >= previous.reached_at
    {%- endif %}
    where e.event_type = '{{ step }}'
    group by e.tenant_id, e.session_id
),
{% endfor %}

reached as (
    {% for step in steps -%}
    select {{ loop.index }} as step_number, tenant_id, session_id from step_{{ loop.index }}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

counts as (
    select
        r.tenant_id,
        s.session_date,
        r.step_number,
        count(*) as sessions,
        count(distinct s.visitor_id) as visitors
    from reached as r
    inner join sessions as s
        on r.tenant_id = s.tenant_id
        and r.session_id = s.session_id
    group by r.tenant_id, s.session_date, r.step_number
),

funnel_steps (step_number, step_name) as (
    values
    {% for step in steps -%}
        ({{ loop.index }}, '{{ step }}'){{ "," if not loop.last }}
    {% endfor %}
),

grid as (
    -- Every step of every day that has sessions, reached by nobody or not.
    select
        d.tenant_id,
        d.session_date as event_date,
        f.step_number,
        f.step_name,
        coalesce(c.sessions, 0) as sessions,
        coalesce(c.visitors, 0) as visitors
    from (select distinct tenant_id, session_date from sessions) as d
    cross join funnel_steps as f
    left join counts as c
        on d.tenant_id = c.tenant_id
        and d.session_date = c.session_date
        and f.step_number = c.step_number
)

select
    tenant_id,
    event_date,
    step_number,
    step_name,
    sessions,
    visitors,
    round(
        visitors::numeric / nullif(
            case when step_number = 1 then visitors else lag(visitors) over day_funnel end, 0
        ),
        4
    ) as conversion_from_previous,
    round(visitors::numeric / nullif(first_value(visitors) over day_funnel, 0), 4)
        as conversion_from_first
from grid
window day_funnel as (partition by tenant_id, event_date order by step_number)
