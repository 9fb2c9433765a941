{#
  The one definition of a session, shared by fct_sessions (which aggregates it)
  and fct_funnel_daily (which needs each event's session; sessions of one
  visitor may overlap in time, so an event cannot be matched by time range).

  sessionized_events(events) selects the events of the run's window [S-2, E+2]
  (a session starting in [S-1, E+1] has all its events there) with the
  session each belongs to, keyed by session_key() (tenant, visitor, client id,
  and session_segment, the count of cuts inside the id so far):
  - a visitor's events with one client session id (session_hint) form one
    session, so interleaved ids are parallel sessions (as Snowplow and GA4
    count them); events without an id form one timeline of their own;
  - inside an id (or the id-less timeline) a gap longer than
    session_timeout_minutes starts a new session; a gap equal to it stays in;
  - session_id(...) = md5 of the tenant, the first event's event_id and its
    occurred_at, with the event id length-prefixed so no two inputs encode
    alike. Each event is in exactly one session, so within a run two sessions
    never share a first event; the time keeps two copies of an event id sent
    with different times (staged on different days) apart across runs.
  fct_sessions takes a session's first event and start by grouping on the key
  (measured about twice as fast as another window over the events, README);
  fct_funnel_daily, which needs each event's session id, uses a window.
#}
{% macro sessionized_events(events) -%}
    with window_events as (
        -- An event staged on two days (a later day built first) counts once: the
        -- earliest day's copy, as staging keeps once both days are built.
        select distinct on (tenant_id, event_id) *
        from {{ events }}
        where {{ tenant_day_filter('tenant_id', 'event_date', days_before=2, days_after=2) }}
        order by tenant_id, event_id, event_date, source_file, source_line
    ),

    gaps as (
        select
            *,
            occurred_at - lag(occurred_at) over client_session
                > make_interval(mins => {{ session_timeout_minutes() }}) as after_timeout,
            lag(occurred_at) over client_session is null as first_of_id
        from window_events
        -- PARTITION BY groups NULLs together: the id-less events are one timeline.
        window client_session as (
            partition by tenant_id, visitor_id, session_hint order by occurred_at, event_id
        )
    ),

    numbered as (
        select
            *,
            count(*) filter (where first_of_id or after_timeout) over (
                partition by tenant_id, visitor_id, session_hint order by occurred_at, event_id
                rows unbounded preceding
            ) as session_segment
        from gaps
    )

    select * from numbered
{%- endmacro %}

{# The columns that identify a session among the events sessionized_events returns. #}
{% macro session_key() -%}
    tenant_id, visitor_id, session_hint, session_segment
{%- endmacro %}

{# A session's id from its tenant and first event (the event's id and time). #}
{% macro session_id(tenant_id, first_event_id, first_occurred_at) -%}
    md5(
        {{ tenant_id }} || '|' || length({{ first_event_id }}) || '|' || {{ first_event_id }} || '|'
        || to_char({{ first_occurred_at }} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
    )
{%- endmacro %}

{# The inactivity timeout in minutes (var session_timeout_minutes), checked to be a positive integer. #}
{% macro session_timeout_minutes() -%}
    {%- set minutes = var('session_timeout_minutes') -%}
    {%- if minutes is not number or minutes is boolean or minutes != minutes | int or minutes <= 0 -%}
        {{ exceptions.raise_compiler_error("var 'session_timeout_minutes' must be a positive whole number of minutes, got " ~ minutes) }}
    {%- endif -%}
    {{ minutes | int }}
{%- endmacro %}

{# The site an event belongs to: the one it names, else its tenant's default site (the tenant's own id). #}
{% macro site_of(site_column='site_id', tenant_column='tenant_id') -%}
    coalesce({{ site_column }}, {{ tenant_column }})
{%- endmacro %}
