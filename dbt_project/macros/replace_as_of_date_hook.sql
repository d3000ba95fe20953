{#- For a mart kept per as_of_date: before appending the run's day, delete that day, so a
    rerun replaces it whole (rows that no longer qualify leave too) and no other day changes. -#}
{% macro replace_as_of_date_hook() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where as_of_date = {{ as_of_date() }}
    {%- endif -%}
{%- endmacro %}
