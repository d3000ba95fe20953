{#- Money is DECIMAL(18,2) everywhere (SPEC §2): sums widen DuckDB decimals, so narrow them back. -#}
{% macro money(expression) -%}
    cast({{ expression }} as decimal(18, 2))
{%- endmacro %}
