with

source as (

    select * from {{ source('ops', 'email_events') }}

),

renamed as (

    select
        -- ids
        event_key,
        sg_event_id,
        sg_message_id,
        outbox_id as action_key,

        -- strings
        email,
        event,
        event_type,
        reason,
        url,
        source as received_from,

        -- timestamps
        occurred_at,
        received_at

    from source

)

select * from renamed
