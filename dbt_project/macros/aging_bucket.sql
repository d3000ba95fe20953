{#- The aging bucket of a number of days past due (SPEC §3): current when not yet past due. -#}
{% macro aging_bucket(days_past_due) -%}
    case
        when {{ days_past_due }} <= 0 then 'current'
        when {{ days_past_due }} <= 30 then '1_30'
        when {{ days_past_due }} <= 60 then '31_60'
        when {{ days_past_due }} <= 90 then '61_90'
        when {{ days_past_due }} <= 120 then '91_120'
        when {{ days_past_due }} <= 150 then '121_150'
        when {{ days_past_due }} <= 180 then '151_180'
        else '181_plus'
    end
{%- endmacro %}
