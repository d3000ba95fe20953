with

source as (

    select * from {{ source('ops', 'action_ledger') }}

),

renamed as (

    select
        -- ids
        action_key,
        account_id,
        customer_id,
        run_id,
        provider_message_id,

        -- strings
        stage,
        channel,
        template,
        policy_version,
        segment,
        currency,
        status,
        reason,
        recipient,
        language,
        provider,
        output_path,
        owner,
        last_event,

        -- numbers
        stage_order,
        total_open,
        collectible_amount,
        times_planned,
        attempts,

        -- dates
        stage_entered_date,
        as_of_date,
        due_date,

        -- timestamps
        planned_at,
        status_at,
        sent_at,
        send_at,
        last_event_at

    from source

)

select * from renamed
