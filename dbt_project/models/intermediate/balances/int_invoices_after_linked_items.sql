-- SPEC §3 step 1: items linked to an invoice act on that invoice first. Several linked items
-- net as a sum:
--   open  = max(0, amount + linked charges - linked credits)
--   excess = max(0, linked credits - amount - linked charges)  -> joins the unallocated credit
with

invoices as (

    select * from {{ ref('int_invoices_issued') }}

),

linked as (

    select
        linked_invoice_id as invoice_id,
        sum(case when side = 'charge' then amount else 0 end) as linked_charges,
        sum(case when side = 'credit' then amount else 0 end) as linked_credits
    from {{ ref('int_ledger_items') }}
    where linked_invoice_id is not null
    group by linked_invoice_id

),

final as (

    select
        invoices.invoice_id,
        invoices.account_id,
        invoices.invoice_number,
        invoices.issue_date,
        invoices.due_date,
        invoices.amount as invoice_amount,
        {{ money('coalesce(linked.linked_charges, 0)') }} as linked_charges,
        {{ money('coalesce(linked.linked_credits, 0)') }} as linked_credits,
        {{ money('greatest(invoices.amount + coalesce(linked.linked_charges, 0)'
            ' - coalesce(linked.linked_credits, 0), 0)') }} as open_after_linked,
        {{ money('greatest(coalesce(linked.linked_credits, 0) - invoices.amount'
            ' - coalesce(linked.linked_charges, 0), 0)') }} as excess_credit
    from invoices
    left join linked
        on invoices.invoice_id = linked.invoice_id

)

select * from final
