-- Every money movement that counts on the as-of date, one row per item, with its side:
--   credit: payments in effect, credit notes, write-offs (reduce what is owed)
--   charge: fees and interest (increase it)
--   refund: money paid back (reduces the credit available)
-- linked_invoice_id is set only when the item names an invoice of its account that is
-- issued by the as-of date; otherwise the item is unlinked (SPEC §3: an item linked to an
-- invoice not yet issued joins the unallocated credit, and a refund is always unlinked). A
-- fee or interest linked to an invoice not yet issued is, likewise, an unlinked item: an open
-- item of its own, due on its effective date.
with

payments as (

    select * from {{ ref('int_payments_in_effect') }}

),

adjustments as (

    select * from {{ ref('stg_billing__adjustments') }}
    where effective_date <= {{ as_of_date() }}

),

invoices as (

    select * from {{ ref('int_invoices_issued') }}

),

items as (

    select
        account_id,
        payment_id as item_id,
        'payment' as item_kind,
        'credit' as side,
        invoice_id,
        amount,
        received_date as item_date
    from payments

    union all

    select
        account_id,
        adjustment_id as item_id,
        adjustment_kind as item_kind,
        case
            when adjustment_kind in ('credit_note', 'write_off') then 'credit'
            when adjustment_kind in ('fee', 'interest') then 'charge'
            else 'refund'
        end as side,
        invoice_id,
        amount,
        effective_date as item_date
    from adjustments

),

final as (

    select
        items.account_id,
        items.item_id,
        items.item_kind,
        items.side,
        items.amount,
        items.item_date,
        case
            when items.side <> 'refund' then invoices.invoice_id
        end as linked_invoice_id
    from items
    left join invoices
        on
            items.invoice_id = invoices.invoice_id
            and items.account_id = invoices.account_id

)

select * from final
