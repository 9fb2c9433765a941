{#
  The days each visitor had a session, as of the last dim_visitors build: built
  after it, so dim_visitors can tell which visitors a rebuilt day had before the
  rebuild (macros/tenant_day_slice.sql touched_visitors). Rebuilt for the same
  days as fct_sessions.
#}
-- depends_on: {{ ref('dim_visitors') }}
{{
  config(
    pre_hook="{{ delete_tenant_day_slice('session_date', refresh_neighbours=true) }}",
    indexes=[{'columns': ['tenant_id', 'session_date']}],
  )
}}

select distinct tenant_id, session_date, visitor_id
from {{ ref('fct_sessions') }}
where {{ aggregate_slice('session_date', refresh_neighbours=true) }}
