-- Every contact recoup planned, with what became of it and what SendGrid reported back, and
-- every credit hold and release handed to billing (ops.credit_holds). A view: the contact and
-- credit-hold steps write their ledgers after dbt has built, and the log must show them.
with

actions as (

    select * from {{ ref('stg_ops__actions') }}

),

credit_holds as (

    select * from {{ ref('stg_ops__credit_holds') }}

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

contacts as (

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

),

-- a credit hold and its release are instructions to billing, not contacts of the customer
-- (is_contacted is false); status sent: the day's file holds them
credit_holds_placed as (

    select
        hold_id as action_key,
        account_id,
        customer_id,
        held_run_id as run_id,
        'credit_hold' as channel,
        coalesce(stage, 'none') as stage,
        null::varchar as template,
        null::varchar as language,
        null::varchar as policy_version,
        'sent' as status,
        array_to_string(reasons, ', ') as reason,
        'billing_file' as provider,
        hold_file as provider_message_id,
        null::varchar as recipient,
        null::varchar as owner,
        null::varchar as last_event,
        currency,
        collectible_amount,
        null::integer as attempts,
        null::integer as times_planned,
        false as is_contacted,
        null::date as stage_entered_date,
        held_on as as_of_date,
        null::date as due_date,
        held_at as planned_at,
        held_at as sent_at,
        null::timestamptz as send_at,
        null::timestamptz as delivered_at,
        null::timestamptz as first_opened_at,
        null::timestamptz as bounced_at,
        null::timestamptz as dropped_at,
        null::timestamptz as opted_out_at
    from credit_holds

),

credit_holds_released as (

    select
        release_id as action_key,
        account_id,
        customer_id,
        released_run_id as run_id,
        'credit_hold_release' as channel,
        coalesce(stage, 'none') as stage,
        null::varchar as template,
        null::varchar as language,
        null::varchar as policy_version,
        'sent' as status,
        release_reason as reason,
        'billing_file' as provider,
        release_file as provider_message_id,
        null::varchar as recipient,
        null::varchar as owner,
        null::varchar as last_event,
        currency,
        released_collectible_amount as collectible_amount,
        null::integer as attempts,
        null::integer as times_planned,
        false as is_contacted,
        null::date as stage_entered_date,
        released_on as as_of_date,
        null::date as due_date,
        released_at as planned_at,
        released_at as sent_at,
        null::timestamptz as send_at,
        null::timestamptz as delivered_at,
        null::timestamptz as first_opened_at,
        null::timestamptz as bounced_at,
        null::timestamptz as dropped_at,
        null::timestamptz as opted_out_at
    from credit_holds
    where released_on is not null

),

final as (

    select * from contacts
    union all
    select * from credit_holds_placed
    union all
    select * from credit_holds_released

)

select * from final
