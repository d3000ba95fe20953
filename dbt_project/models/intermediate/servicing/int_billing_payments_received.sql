-- Every billing payment and reversal received by the as-of date, one row per payment_id, with
-- its account's attributes and whether it counts on that date (is_in_effect): a reversal never
-- counts by itself, and a payment stops counting once a reversal received by then undoes it
-- (the same rule as int_billing_payments_in_effect, which the balances read). The servicing
-- marts read payments here because they need what balances do not: currency, method, the
-- reversed payment and the account's status.
with

payments as (

    select * from {{ ref('stg_billing__payments') }}
    where received_date <= {{ as_of_date() }}

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

reversed as (

    select distinct reverses_payment_id as payment_id
    from payments
    where is_reversal

),

final as (

    select
        payments.payment_id,
        payments.account_id,
        accounts.customer_id,
        payments.invoice_id,
        payments.reverses_payment_id,
        payments.payment_method,
        payments.currency,
        accounts.currency as account_currency,
        accounts.account_status,
        payments.amount,
        payments.received_date,
        payments.is_reversal,
        reversed.payment_id is not null as is_reversed,
        not payments.is_reversal and reversed.payment_id is null as is_in_effect
    from payments
    inner join accounts
        on payments.account_id = accounts.account_id
    left join reversed
        on payments.payment_id = reversed.payment_id

)

select * from final
