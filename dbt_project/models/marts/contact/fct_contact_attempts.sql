-- Every step of every contact: planned, claimed, sent, failed, deferred, cancelled, confirmed
-- by an event. A view over the append-only action log, like fct_contact_log.
with

changes as (

    select * from {{ ref('stg_ops__action_log') }}

),

actions as (

    select * from {{ ref('stg_ops__actions') }}

),

final as (

    select
        changes.action_key,
        actions.account_id,
        actions.customer_id,
        changes.run_id,
        actions.channel,
        actions.stage,
        actions.template,
        changes.from_status,
        changes.to_status,
        changes.reason,
        changes.logged_at
    from changes
    inner join actions
        on changes.action_key = actions.action_key

)

select * from final
