-- Every contact recoup planned, with what became of it and what SendGrid reported back. A
-- view: the contact steps write the ledger after dbt has built, and the log must show them.
with

actions as (

    select * from {{ ref('stg_ops__actions') }}

),

events as (

    select * from {{ ref('stg_ops__email_events') }}
    where action_key is not null

),

delivery as (

    select
        action_key,
        min(occurred_at) filter (where event = 'delivered') as delivered_at,
        min(occurred_at) filter (where event = 'open') as first_opened_at,
        min(occurred_at) filter (
            where event = 'bounce' and coalesce(event_type, 'bounce') = 'bounce'
        ) as bounced_at,
        min(occurred_at) filter (where event = 'dropped') as dropped_at,
        min(occurred_at) filter (
            where event in ('unsubscribe', 'group_unsubscribe', 'spamreport')
        ) as opted_out_at
    from events
    group by action_key

),

final as (

    select
        actions.action_key,
        actions.account_id,
        actions.customer_id,
        actions.run_id,
        actions.channel,
        actions.stage,
        actions.template,
        actions.language,
        actions.policy_version,
        actions.status,
        actions.reason,
        actions.provider,
        actions.provider_message_id,
        actions.recipient,
        actions.owner,
        actions.last_event,
        actions.currency,
        actions.collectible_amount,
        actions.attempts,
        actions.times_planned,
        actions.status in ('sent', 'maybe_sent') as is_contacted,
        actions.stage_entered_date,
        actions.as_of_date,
        actions.due_date,
        actions.planned_at,
        actions.sent_at,
        actions.send_at,
        delivery.delivered_at,
        delivery.first_opened_at,
        delivery.bounced_at,
        delivery.dropped_at,
        delivery.opted_out_at
    from actions
    left join delivery
        on actions.action_key = delivery.action_key

)

select * from final
