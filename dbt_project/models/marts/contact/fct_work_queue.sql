-- The phone and manager work queues: every item queued, with its owner and due date, and
-- whether it is still open (the account is still in that stage on the latest run, with
-- something to collect). A view over the ledger, like fct_contact_log.
with

items as (

    select * from {{ ref('stg_ops__actions') }}
    where channel in ('phone', 'manager') and status = 'sent'

),

current_stage as (

    select * from {{ ref('fct_account_stage') }}

),

final as (

    select
        items.action_key as item_id,
        case when items.channel = 'manager' then 'manager' else 'phone' end as queue,
        items.owner,
        items.account_id,
        items.customer_id,
        items.stage,
        items.reason,
        items.recipient as phone,
        items.currency,
        items.collectible_amount as collectible_when_queued,
        current_stage.stage as current_stage,
        current_stage.collectible_amount as current_collectible,
        coalesce(
            current_stage.stage = items.stage
            and not current_stage.is_held
            and current_stage.collectible_amount > 0,
            false
        ) as is_open,
        coalesce(
            current_stage.stage = items.stage
            and not current_stage.is_held
            and current_stage.collectible_amount > 0
            and items.due_date < current_stage.as_of_date,
            false
        ) as is_overdue,
        items.as_of_date as queued_date,
        items.due_date,
        items.sent_at as queued_at
    from items
    left join current_stage
        on items.account_id = current_stage.account_id

)

select * from final
