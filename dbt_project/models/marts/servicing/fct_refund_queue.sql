-- The refund queue (SPEC §3 step 3, §5): one row per account owed a refund on the as-of date.
-- An account's credit balance goes back to the customer once it has sat still for
-- var('refund_hold_days') days (any ledger activity restarts the hold), unless an open item,
-- an open dispute or a fraud or legal hold flag needs it. A refund that arrives in the billing
-- export reduces the credit balance, so the account leaves the queue by itself.
with

balances as (

    select * from {{ ref('int_account_balances') }}

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

payments as (

    select * from {{ ref('int_billing_payments_received') }}

),

open_disputes as (

    select distinct account_id
    from {{ ref('int_open_disputes') }}

),

-- flags under which no money leaves: a refund to a suspected fraud, or during a legal hold,
-- waits for a person
blocking_flags as (

    select distinct account_id
    from {{ ref('int_active_flags') }}
    where flag in ('fraud', 'legal_hold')

),

-- every ledger event on or before the as-of date: invoice issued, payment or reversal
-- received (billing or agency), adjustment effective
activity as (

    select
        account_id,
        issue_date as activity_date
    from {{ ref('int_invoices_issued') }}

    union all

    select
        account_id,
        received_date as activity_date
    from payments

    union all

    select
        account_id,
        effective_date as activity_date
    from {{ ref('stg_billing__adjustments') }}
    where effective_date <= {{ as_of_date() }}

    union all

    select
        account_id,
        paid_date as activity_date
    from {{ ref('stg_ops__remittances') }}
    where paid_date <= {{ as_of_date() }}

),

last_activity as (

    select
        account_id,
        max(activity_date) as credit_since
    from activity
    group by account_id

),

-- the method of the latest payment in effect (not a reversal, not reversed), by
-- (received_date, payment_id)
last_payment as (

    select
        account_id,
        max_by(
            payment_method, strftime(received_date, '%Y-%m-%d') || payment_id
        ) as payment_method
    from payments
    where is_in_effect
    group by account_id

),

eligible as (

    select
        balances.account_id,
        accounts.customer_id,
        accounts.currency,
        balances.credit_balance as amount,
        coalesce(last_payment.payment_method, 'check') as method,
        last_activity.credit_since,
        {{ as_of_date() }} - last_activity.credit_since as days_held
    from balances
    inner join accounts
        on balances.account_id = accounts.account_id
    inner join last_activity
        on balances.account_id = last_activity.account_id
    left join last_payment
        on balances.account_id = last_payment.account_id
    left join open_disputes
        on balances.account_id = open_disputes.account_id
    left join blocking_flags
        on balances.account_id = blocking_flags.account_id
    where
        balances.credit_balance > 0
        and balances.total_open = 0
        and open_disputes.account_id is null
        and blocking_flags.account_id is null
        and {{ as_of_date() }} - last_activity.credit_since
        >= {{ var('refund_hold_days', 30) }}

),

final as (

    select
        account_id,
        customer_id,
        {{ as_of_date() }} as as_of_date,
        currency,
        amount,
        method,
        credit_since,
        days_held,
        md5(
            concat_ws(
                '|', account_id, cast(amount as varchar), cast({{ as_of_date() }} as varchar)
            )
        ) as refund_key
    from eligible

)

select * from final
