with

items as (

    select * from {{ ref('int_open_items_disputed') }}

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

final as (

    select
        items.item_id,
        items.item_type,
        items.invoice_id,
        items.invoice_number,
        items.account_id,
        accounts.customer_id,
        {{ as_of_date() }} as as_of_date,
        accounts.currency,
        accounts.segment,
        items.issue_date,
        items.due_date,
        items.original_amount,
        items.amount_before_credit,
        items.credit_applied,
        items.open_amount,
        items.disputed_amount,
        items.collectible_amount,
        items.days_past_due,
        items.aging_bucket
    from items
    inner join accounts
        on items.account_id = accounts.account_id

)

select * from final
