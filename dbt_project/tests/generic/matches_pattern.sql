{# Values that do not match a POSIX regular expression (nulls pass; not_null says otherwise). #}
{% test matches_pattern(model, column_name, pattern) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} !~ '{{ pattern | replace("'", "''") }}'
{% endtest %}
