with

source as (

    select * from {{ source('ops', 'remittances') }}

),

renamed as (

    select
        -- ids
        remittance_key,
        remittance_id,
        agency_id,
        placement_id,
        account_id,

        -- strings
        currency,
        file_name,

        -- numbers
        collected_amount,
        commission_amount,
        line_number,

        -- dates
        paid_date,

        -- timestamps
        loaded_at

    from source

)

select * from renamed
