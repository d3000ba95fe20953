-- Every remittance an agency reported, paid by the as-of date, reconciled against the billing
-- export and the placement: in_billing when a billing payment records the same money (the
-- rule is in int_remittances_matched_to_billing_payments), agency_only when it counts as an
-- agency payment; flagged when its currency is not the account's or the agency collected
-- after the placement was recalled.
with

remittances as (

    select
        remittance_key,
        remittance_id,
        file_name,
        line_number
    from {{ ref('stg_ops__remittances') }}

),

matched as (

    select * from {{ ref('int_remittances_matched_to_billing_payments') }}

),

placements as (

    select
        placement_id,
        customer_id,
        placed_date,
        recalled_date
    from {{ ref('stg_ops__placements') }}

),

accounts as (

    select
        account_id,
        currency
    from {{ ref('stg_billing__accounts') }}

),

flagged as (

    select
        matched.*,
        placements.customer_id,
        placements.placed_date,
        accounts.currency as account_currency,
        -- an account missing from the billing export counts as a mismatch: nothing to book on
        coalesce(accounts.currency <> matched.currency, true) as is_currency_mismatch,
        -- the agency collected after the recall took effect (a recall dated after the as-of
        -- date is not a fact yet, and then paid_date, at most as_of, is before it)
        coalesce(placements.recalled_date < matched.paid_date, false) as is_paid_after_recall
    from matched
    left join placements
        on matched.placement_id = placements.placement_id
    left join accounts
        on matched.account_id = accounts.account_id

),

final as (

    select
        flagged.remittance_key,
        remittances.remittance_id,
        flagged.agency_id,
        flagged.account_id,
        flagged.customer_id,
        flagged.placement_id,
        {{ as_of_date() }} as as_of_date,
        flagged.placed_date,
        flagged.paid_date,
        flagged.currency,
        flagged.account_currency,
        flagged.collected_amount,
        flagged.commission_amount,
        {{ money('flagged.collected_amount - flagged.commission_amount') }} as net_amount,
        flagged.matched_payment_id,
        flagged.matched_received_date,
        case
            when flagged.is_in_billing then 'in_billing' else 'agency_only'
        end as reconciliation_status,
        flagged.is_currency_mismatch,
        flagged.is_paid_after_recall,
        flagged.is_currency_mismatch or flagged.is_paid_after_recall as has_discrepancy,
        remittances.file_name,
        remittances.line_number
    from flagged
    inner join remittances
        on flagged.remittance_key = remittances.remittance_key

)

select * from final
