-- Cure rate per stage: of the accounts in each stage at the start of the period (the last
-- run on or before as_of_date - kpi_period_days), the share that are cured on the as-of date:
-- nothing collectible past due any more (settled, or back to stage none and not held).
with

history as (

    select * from {{ ref('fct_account_stage_history') }}

),

start_run as (

    select max(as_of_date) as as_of_date
    from history
    where as_of_date <= {{ as_of_date() }} - {{ var('kpi_period_days') }}

),

started as (

    select history.*
    from history
    inner join start_run
        on history.as_of_date = start_run.as_of_date
    where history.stage <> 'none'

),

ended as (

    select * from history
    where as_of_date = {{ as_of_date() }}

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        (select start_run.as_of_date from start_run) as from_date,
        started.currency,
        started.stage_order,
        started.stage,
        count(*) as accounts,
        count(*) filter (
            where ended.account_id is null
            or (ended.stage = 'none' and not ended.is_held and ended.max_days_past_due = 0)
        ) as cured,
        round(
            100.0 * count(*) filter (
                where ended.account_id is null
                or (ended.stage = 'none' and not ended.is_held and ended.max_days_past_due = 0)
            ) / count(*), 1
        ) as cure_rate
    from started
    left join ended
        on started.account_id = ended.account_id
    group by started.currency, started.stage_order, started.stage

)

select * from final
