{#- The run's as-of date as a DATE literal. Models never use current_date: a rerun for a past
    date must compute what that day's run computed. -#}
{% macro as_of_date() -%}
    cast('{{ var("as_of_date") }}' as date)
{%- endmacro %}
