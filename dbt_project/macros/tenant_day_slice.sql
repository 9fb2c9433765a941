{#
  The tenant-day slice a run rebuilds, from the vars Dagster passes:
  tenants (list of ids) x [start_date, end_date]. With no vars, every row.
  Ids and dates are validated here too, so nothing unchecked reaches SQL.
#}
{% macro tenant_day_filter(tenant_column='tenant_id', date_column='event_date') -%}
    {%- set tenants = var('tenants') -%}
    {%- if tenants is none -%}
        true
    {%- else -%}
        {%- if tenants is string or tenants | length == 0 -%}
            {{ exceptions.raise_compiler_error("var 'tenants' must be a non-empty list of tenant ids") }}
        {%- endif -%}
        {%- for tenant in tenants -%}
            {%- if not modules.re.fullmatch('[a-z][a-z0-9_]{1,39}', tenant | string) -%}
                {{ exceptions.raise_compiler_error("invalid tenant id in var 'tenants': " ~ tenant) }}
            {%- endif -%}
        {%- endfor -%}
        {%- set start_date = modules.datetime.date.fromisoformat(var('start_date') | string) -%}
        {%- set end_date = modules.datetime.date.fromisoformat(var('end_date') | string) -%}
        {{ tenant_column }} in ({% for tenant in tenants %}'{{ tenant }}'{{ ", " if not loop.last }}{% endfor %})
        and {{ date_column }} between '{{ start_date }}'::date and '{{ end_date }}'::date
    {%- endif -%}
{%- endmacro %}

{# pre_hook of incremental models: clear the slice, in the same transaction as the insert. #}
{% macro delete_tenant_day_slice(date_column='event_date') -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ tenant_day_filter('tenant_id', date_column) }}
    {%- endif -%}
{%- endmacro %}
