with

source as (

    select * from {{ source('ops', 'customer_contacts') }}

),

renamed as (

    select
        -- ids
        customer_id,

        -- strings
        timezone,
        email,
        phone,
        address_line1,
        address_line2,
        city,
        state,
        postal_code,
        country,
        email_source,
        phone_source,
        address_source,

        -- booleans
        address_returned as is_address_returned,
        phone_invalid as is_phone_invalid,

        -- dates
        email_updated_on,
        phone_updated_on,
        address_updated_on,

        -- timestamps
        email_updated_at,
        phone_updated_at,
        address_updated_at

    from source

)

select * from renamed
