-- One row per account per as_of_date, kept for every run date (a rerun replaces its day):
-- "the aging buckets on date X" is a query. Current state: filter on the latest as_of_date.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ replace_as_of_date_hook() }}",
    )
}}

with

balances as (

    select * from {{ ref('int_account_balances') }}

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

stages as (

    select * from {{ ref('fct_account_stage') }}

),

final as (

    select
        balances.account_id,
        accounts.customer_id,
        {{ as_of_date() }} as as_of_date,
        accounts.currency,
        accounts.segment,
        balances.current,
        balances.dpd_1_30,
        balances.dpd_31_60,
        balances.dpd_61_90,
        balances.dpd_91_120,
        balances.dpd_121_150,
        balances.dpd_151_180,
        balances.dpd_181_plus,
        balances.total_open,
        balances.disputed_amount,
        balances.collectible_amount,
        balances.credit_balance,
        balances.oldest_due_date,
        balances.max_days_past_due,
        stages.stage,
        nullif(stages.hold_reason, '') as hold_reason,
        balances.refund_shortfall
    from balances
    inner join accounts
        on balances.account_id = accounts.account_id
    left join stages
        on balances.account_id = stages.account_id

)

select * from final
