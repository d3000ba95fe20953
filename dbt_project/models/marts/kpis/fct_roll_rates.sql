-- Roll-rate matrix: where the accounts of each delinquency bucket at the start of the period
-- are on the as-of date. An account with nothing open any more is in to_bucket 'settled'.
with

period as (

    select * from {{ ref('int_stage_history_over_period') }}

),

moves as (

    select
        from_date,
        currency,
        from_bucket,
        coalesce(to_bucket, 'settled') as to_bucket,
        count(*) as accounts,
        sum(from_total_open) as from_balance
    from period
    group by all

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        from_date,
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
