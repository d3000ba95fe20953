-- Cure rate per stage: of the accounts in each stage at the start of the period, the share
-- cured on the as-of date: settled, or back to stage none, not held and nothing past due.
with

period as (

    select
        *,
        to_stage is null
        or (to_stage = 'none' and not to_is_held and to_max_days_past_due = 0) as is_cured
    from {{ ref('int_stage_history_over_period') }}
    where from_stage <> 'none'

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        from_date,
        currency,
        from_stage_order as stage_order,
        from_stage as stage,
        count(*) as accounts,
        count(*) filter (where is_cured) as cured,
        round(100.0 * count(*) filter (where is_cured) / count(*), 1) as cure_rate
    from period
    group by from_date, currency, from_stage_order, from_stage

)

select * from final
