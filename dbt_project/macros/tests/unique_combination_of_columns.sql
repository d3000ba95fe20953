{#- Fails for every combination of the columns that appears more than once (dbt_utils'
    test of the same name; recoup installs no dbt packages, so nothing is downloaded). -#}
{% test unique_combination_of_columns(model, columns) %}

select
    {{ columns | join(', ') }},
    count(*) as copies
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1

{% endtest %}
