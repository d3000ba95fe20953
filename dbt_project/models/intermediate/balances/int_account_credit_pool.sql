-- SPEC §3 step 2, the credit side: per account, the unallocated credit that pays open items
-- oldest first = unlinked credits + excesses from step 1 - refunds. A refund larger than the
-- credit is a data error: the pool stops at zero (never a negative credit balance) and the
-- shortfall is kept for the discrepancy queue and the gate.
with

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

unlinked as (

    select
        account_id,
        sum(case when side = 'credit' then amount else 0 end) as unlinked_credits,
        sum(case when side = 'refund' then amount else 0 end) as refunds
    from {{ ref('int_ledger_items') }}
    where linked_invoice_id is null
    group by account_id

),

excesses as (

    select
        account_id,
        sum(excess_credit) as excess_credits
    from {{ ref('int_invoices_after_linked_items') }}
    group by account_id

),

final as (

    select
        accounts.account_id,
        {{ money('coalesce(unlinked.unlinked_credits, 0)') }} as unlinked_credits,
        {{ money('coalesce(excesses.excess_credits, 0)') }} as excess_credits,
        {{ money('coalesce(unlinked.refunds, 0)') }} as refunds,
        {{ money(
            'greatest(coalesce(unlinked.unlinked_credits, 0)'
            ' + coalesce(excesses.excess_credits, 0) - coalesce(unlinked.refunds, 0), 0)'
        ) }} as available_credit,
        {{ money(
            'greatest(coalesce(unlinked.refunds, 0) - coalesce(unlinked.unlinked_credits, 0)'
            ' - coalesce(excesses.excess_credits, 0), 0)'
        ) }} as refund_shortfall
    from accounts
    left join unlinked
        on accounts.account_id = unlinked.account_id
    left join excesses
        on accounts.account_id = excesses.account_id

)

select * from final
