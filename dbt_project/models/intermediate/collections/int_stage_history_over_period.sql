-- Each account as the period's first run saw it (the last run on or before as_of_date -
-- kpi_period_days) beside how the as-of date's run sees it: what roll and cure rates count.
-- One row per account in the start run; the end columns are NULL when the account has
-- nothing open any more.
with

history as (

    select * from {{ ref('fct_account_stage_history') }}

),

start_run as (

    select max(history.as_of_date) as as_of_date
    from history
    where history.as_of_date <= {{ as_of_date() }} - {{ var('kpi_period_days') }}

),

started as (

    select history.*
    from history
    inner join start_run
        on history.as_of_date = start_run.as_of_date

),

ended as (

    select * from history
    where as_of_date = {{ as_of_date() }}

),

final as (

    select
        started.account_id,
        started.currency,
        started.as_of_date as from_date,
        started.delinquency_bucket as from_bucket,
        started.stage_order as from_stage_order,
        started.stage as from_stage,
        started.total_open as from_total_open,
        ended.delinquency_bucket as to_bucket,
        ended.stage as to_stage,
        ended.is_held as to_is_held,
        ended.max_days_past_due as to_max_days_past_due
    from started
    left join ended
        on started.account_id = ended.account_id

)

select * from final
