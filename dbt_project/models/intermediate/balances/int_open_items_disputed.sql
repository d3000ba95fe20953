-- Open items with the part of them under an open invoice-level dispute (SPEC §3):
--   disputed = min(open amount, sum of the invoice's open disputes), where a dispute without
--   an amount means the whole open amount. Disputed amounts stay in the aging; they only
--   leave the collectible balance.
with

items as (

    select * from {{ ref('int_open_items') }}

),

disputes as (

    select * from {{ ref('int_open_disputes') }}
    where invoice_id is not null

),

per_item as (

    select
        items.item_id,
        least(
            items.open_amount,
            sum(coalesce(disputes.disputed_amount, items.open_amount))
        ) as disputed_amount
    from items
    inner join disputes
        on
            items.invoice_id = disputes.invoice_id
            and items.account_id = disputes.account_id
    group by items.item_id, items.open_amount

),

final as (

    select
        items.account_id,
        items.item_id,
        items.item_type,
        items.invoice_id,
        items.invoice_number,
        items.issue_date,
        items.due_date,
        items.original_amount,
        items.amount_before_credit,
        items.credit_applied,
        items.open_amount,
        items.days_past_due,
        {{ money('coalesce(per_item.disputed_amount, 0)') }} as disputed_amount,
        {{ money('items.open_amount - coalesce(per_item.disputed_amount, 0)') }}
            as collectible_amount,
        {{ aging_bucket('items.days_past_due') }} as aging_bucket
    from items
    left join per_item
        on items.item_id = per_item.item_id

)

select * from final
