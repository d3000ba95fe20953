{#- The run's as-of date as a DATE literal. Models never use current_date: a rerun for a past
    date must compute what that day's run computed.

    The daily run passes the date in the environment (RECOUP_AS_OF_DATE), read only when dbt
    executes: parsing sees the project's constant var, so the saved manifest stays valid from
    one day to the next and dbt parses partially instead of re-parsing the whole project (a
    date passed with `--vars` changes the vars, which forces a full parse). Unit tests set the
    var, and the environment holds no date for them. -#}
{% macro as_of_date() -%}
    {%- if execute -%}
        cast('{{ env_var("RECOUP_AS_OF_DATE", var("as_of_date")) }}' as date)
    {%- else -%}
        cast('{{ var("as_of_date") }}' as date)
    {%- endif -%}
{%- endmacro %}
