{# Rows for which a row-level condition over the model's columns is false (nulls fail too). #}
{% test expression_is_true(model, expression) %}
select *
from {{ model }}
where not coalesce({{ expression }}, false)
{% endtest %}
