{#
  dbt tests judge the run's own tenant-days, never the whole table: a bad slice of
  one tenant (or one day) must not fail another tenant's run, nor the runs of the
  neighbouring days that refresh it (sessions cross midnight; each day is judged by
  its own runs). dbt wraps every generic test's model in get_where_subquery; this
  adds the run's slice (from the vars Dagster passes) to any `where` a test sets.
  With no vars (a manual `dbt build`), tests read every row, as dbt's default does.
#}
{% macro postgres__get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}{%- do conditions.append('(' ~ where ~ ')') -%}{%- endif -%}
    {#- Parsing renders tests with only dbt's own macros at hand; runs have them all. -#}
    {%- set slice = run_slice_condition(relation) if execute and slice_var('tenants') is not none else '' -%}
    {%- if slice -%}{%- do conditions.append(slice) -%}{%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{# The run's slice of a model or source relation, by the day column it has ('' = all rows). #}
{% macro run_slice_condition(relation) -%}
    {%- set columns = [] -%}
    {%- for node in graph.nodes.values() | list + graph.sources.values() | list -%}
        {%- set name = node.get('alias') or node.get('identifier') or node.get('name') -%}
        {%- if node.get('schema') == relation.schema and name == relation.identifier -%}
            {%- do columns.extend(node.get('columns', {}).keys()) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for day in ['event_date', 'session_date', '_partition_date'] -%}
        {%- if day in columns -%}{{ return(tenant_day_filter('tenant_id', day)) }}{%- endif -%}
    {%- endfor -%}
    {%- if 'tenant_id' in columns -%}{{ return(tenant_filter()) }}{%- endif -%}
    {{ return('') }}
{%- endmacro %}
