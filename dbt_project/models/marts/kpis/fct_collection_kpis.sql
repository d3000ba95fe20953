-- Collection KPIs per currency for the trailing period ending on the as-of date
-- (var kpi_period_days). Definitions are in _kpis__models.yml.
with

balances as (

    select
        balances.*,
        accounts.currency
    from {{ ref('int_account_balances') }} as balances
    inner join {{ ref('stg_billing__accounts') }} as accounts
        on balances.account_id = accounts.account_id

),

period as (

    select
        {{ as_of_date() }} - {{ var('kpi_period_days') }} as period_start,
        {{ var('kpi_period_days') }} as period_days

),

ending as (

    select
        currency,
        sum(total_open) as ending_receivables,
        sum(current) as ending_current_receivables
    from balances
    group by currency

),

credit_sales as (

    select
        accounts.currency,
        sum(invoices.amount) as credit_sales
    from {{ ref('int_invoices_issued') }} as invoices
    inner join {{ ref('stg_billing__accounts') }} as accounts
        on invoices.account_id = accounts.account_id
    cross join period
    where invoices.issue_date > period.period_start
    group by accounts.currency

),

-- receivables at the start of the period, from the last run on or before it
beginning_run as (

    select max(history.as_of_date) as as_of_date
    from {{ ref('fct_account_stage_history') }} as history
    cross join period
    where history.as_of_date <= period.period_start

),

beginning as (

    select
        history.currency,
        sum(history.total_open) as beginning_receivables
    from {{ ref('fct_account_stage_history') }} as history
    inner join beginning_run
        on history.as_of_date = beginning_run.as_of_date
    group by history.currency

),

promises as (

    select
        accounts.currency,
        count(*) filter (where plans.plan_status = 'kept') as kept,
        count(*) filter (where plans.plan_status = 'broken') as broken
    from {{ ref('int_payment_plans') }} as plans
    inner join {{ ref('stg_billing__accounts') }} as accounts
        on plans.account_id = accounts.account_id
    cross join period
    where plans.created_date > period.period_start
    group by accounts.currency

),

currencies as (

    select currency from ending
    union
    select currency from credit_sales

),

final as (

    select
        currencies.currency,
        {{ as_of_date() }} as as_of_date,
        period.period_start,
        period.period_days,
        beginning_run.as_of_date as beginning_run_date,
        {{ money('coalesce(credit_sales.credit_sales, 0)') }} as credit_sales,
        {{ money('beginning.beginning_receivables') }} as beginning_receivables,
        {{ money('coalesce(ending.ending_receivables, 0)') }} as ending_receivables,
        {{ money('coalesce(ending.ending_current_receivables, 0)') }}
            as ending_current_receivables,
        round(
            coalesce(ending.ending_receivables, 0)
            / nullif(credit_sales.credit_sales, 0) * period.period_days, 1
        ) as dso_days,
        round(
            coalesce(ending.ending_current_receivables, 0)
            / nullif(credit_sales.credit_sales, 0) * period.period_days, 1
        ) as best_possible_dso_days,
        round(
            (
                coalesce(ending.ending_receivables, 0)
                - coalesce(ending.ending_current_receivables, 0)
            )
            / nullif(credit_sales.credit_sales, 0) * period.period_days, 1
        ) as average_days_delinquent,
        round(
            100.0 * (
                beginning.beginning_receivables + coalesce(credit_sales.credit_sales, 0)
                - coalesce(ending.ending_receivables, 0)
            ) / nullif(
                beginning.beginning_receivables + coalesce(credit_sales.credit_sales, 0)
                - coalesce(ending.ending_current_receivables, 0),
                0
            ), 1
        ) as collection_effectiveness_index,
        coalesce(promises.kept, 0) as promises_kept,
        coalesce(promises.broken, 0) as promises_broken,
        round(
            100.0 * promises.kept / nullif(promises.kept + promises.broken, 0), 1
        ) as promise_kept_rate
    from currencies
    cross join period
    cross join beginning_run
    left join ending
        on currencies.currency = ending.currency
    left join credit_sales
        on currencies.currency = credit_sales.currency
    left join beginning
        on currencies.currency = beginning.currency
    left join promises
        on currencies.currency = promises.currency

)

select * from final
