-- Roll-rate matrix: where the accounts of each delinquency bucket at the start of the period
-- (the last run on or before as_of_date - kpi_period_days) are on the as-of date. An account
-- with nothing open any more is in to_bucket 'settled'.
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

),

ended as (

    select * from history
    where as_of_date = {{ as_of_date() }}

),

moves as (

    select
        started.currency,
        started.delinquency_bucket as from_bucket,
        coalesce(ended.delinquency_bucket, 'settled') as to_bucket,
        count(*) as accounts,
        sum(started.total_open) as from_balance
    from started
    left join ended
        on started.account_id = ended.account_id
    group by all

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        (select start_run.as_of_date from start_run) as from_date,
        currency,
        from_bucket,
        to_bucket,
        accounts,
        {{ money('from_balance') }} as from_balance,
        round(
            100.0 * accounts / sum(accounts) over (partition by currency, from_bucket), 1
        ) as account_rate
    from moves

)

select * from final
