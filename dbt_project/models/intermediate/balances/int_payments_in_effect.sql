-- Payments that count on the as-of date: billing payments in effect (received by then, not
-- reversed by then), and agency payments: remittances paid by then that no billing payment
-- records (int_remittances_matched_to_billing_payments), so money a customer paid an agency
-- reduces the balance from its paid_date and counts once. An agency payment names no invoice:
-- it pays the account's open items oldest first.
with

billing_payments as (

    select
        payment_id,
        account_id,
        invoice_id,
        amount,
        received_date
    from {{ ref('int_billing_payments_in_effect') }}

),

remittances as (

    select
        remittance_key,
        account_id,
        collected_amount,
        paid_date
    from {{ ref('int_remittances_matched_to_billing_payments') }}
    -- a remittance the billing export also holds counts as that billing payment
    where not is_in_billing

),

agency_payments as (

    select
        'agency:' || remittance_key as payment_id,
        account_id,
        null::varchar as invoice_id,
        collected_amount as amount,
        paid_date as received_date
    from remittances

),

final as (

    select
        payment_id,
        account_id,
        invoice_id,
        amount,
        received_date,
        'billing' as payment_source
    from billing_payments

    union all

    select
        payment_id,
        account_id,
        invoice_id,
        amount,
        received_date,
        'agency' as payment_source
    from agency_payments

)

select * from final
