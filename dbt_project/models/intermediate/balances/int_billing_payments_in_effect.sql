{{ config(materialized='view') }}
-- Billing payments that count on the as-of date: received by then and not reversed by then. A
-- reversal (NSF, chargeback, returned check) undoes its payment from the reversal's
-- received_date on; a reversal dated after the as-of date does not count yet.
with

payments as (

    select * from {{ ref('stg_billing__payments') }}
    where received_date <= {{ as_of_date() }}

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
        payments.invoice_id,
        payments.amount,
        payments.received_date
    from payments
    left join reversed
        on payments.payment_id = reversed.payment_id
    where
        not payments.is_reversal
        and reversed.payment_id is null

)

select * from final
