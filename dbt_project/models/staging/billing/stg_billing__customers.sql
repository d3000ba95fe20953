with

source as (

    select * from {{ source('billing', 'customers') }}

),

renamed as (

    select
        -- ids
        customer_id,

        -- strings
        customer_type,
        full_name,
        email,
        phone,
        address_line1,
        address_line2,
        city,
        state,
        postal_code,
        country,
        timezone,
        language,
        -- the full SSN stays in the raw schema; analysts see the last four digits
        right(ssn, 4) as ssn_last4,

        -- dates
        date_of_birth,

        -- timestamps
        created_at

    from source

)

select * from renamed
