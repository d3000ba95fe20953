with

source as (

    select * from {{ source('ops', 'action_log') }}

),

renamed as (

    select
        -- ids
        action_key,
        run_id,

        -- strings
        from_status,
        to_status,
        reason,

        -- timestamps
        logged_at

    from source

)

select * from renamed
