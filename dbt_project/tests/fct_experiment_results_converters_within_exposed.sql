-- A variant never has more converters, or switched visitors, than exposed visitors.
select tenant_id, experiment_id, variant, exposed_visitors, converters, switched_visitors
from {{ ref('fct_experiment_results') }}
where (converters > exposed_visitors or switched_visitors > exposed_visitors)
    -- The run's tenants only (see macros/test_slice.sql).
    and {{ tenant_filter() }}
