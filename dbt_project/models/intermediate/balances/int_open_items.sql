-- SPEC §3 step 2, the debit side: the unallocated credit pays the account's open items in
-- order of (due_date, item id): invoices still open after step 1, and unlinked fees and
-- interest, which are open items of their own due on their effective date. Ties on the date
-- are broken by the item id in string order. One row per item still open on the as-of date.
with

invoices as (

    select
        account_id,
        invoice_id as item_id,
        'invoice' as item_type,
        invoice_id,
        invoice_number,
        issue_date,
        due_date,
        invoice_amount as original_amount,
        open_after_linked as amount_before_credit
    from {{ ref('int_invoices_after_linked_items') }}
    where open_after_linked > 0

),

unlinked_charges as (

    select
        account_id,
        item_id,
        item_kind as item_type,
        null as invoice_id,
        null as invoice_number,
        item_date as issue_date,
        item_date as due_date,
        amount as original_amount,
        amount as amount_before_credit
    from {{ ref('int_ledger_items') }}
    where side = 'charge' and linked_invoice_id is null

),

items as (

    select * from invoices
    union all
    select * from unlinked_charges

),

ordered as (

    select
        items.*,
        coalesce(
            sum(items.amount_before_credit) over (
                partition by items.account_id
                order by items.due_date, items.item_id
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as owed_before_this_item
    from items

),

applied as (

    select
        ordered.*,
        {{ money(
            'least(greatest(pool.available_credit - ordered.owed_before_this_item, 0),'
            ' ordered.amount_before_credit)'
        ) }} as credit_applied
    from ordered
    inner join {{ ref('int_account_credit_pool') }} as pool
        on ordered.account_id = pool.account_id

),

final as (

    select
        account_id,
        item_id,
        item_type,
        invoice_id,
        invoice_number,
        issue_date,
        due_date,
        original_amount,
        amount_before_credit,
        credit_applied,
        {{ money('amount_before_credit - credit_applied') }} as open_amount,
        {{ as_of_date() }} - due_date as days_past_due
    from applied
    where amount_before_credit - credit_applied > 0

)

select * from final
