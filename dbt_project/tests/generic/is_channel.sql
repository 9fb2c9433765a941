{# Values outside the default channel grouping (macros/default_channel.sql; nulls pass). #}
{% test is_channel(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} not in ({% for channel in channel_names() %}'{{ channel }}'{{ ", " if not loop.last }}{% endfor %})
{% endtest %}
