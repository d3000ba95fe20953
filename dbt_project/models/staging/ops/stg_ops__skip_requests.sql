with

source as (

    select * from {{ source('ops', 'skip_requests') }}

),

renamed as (

    select
        -- ids
        request_id,
        customer_id,
        run_id,
        result_import_id,

        -- strings
        status as request_status,
        reasons,
        account_ids,
        request_file,

        -- numbers
        max_days_past_due,

        -- dates
        requested_on,
        answered_on,

        -- timestamps
        requested_at,
        status_at

    from source

)

select * from renamed
