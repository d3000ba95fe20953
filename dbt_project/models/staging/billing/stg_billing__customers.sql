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
        -- the full SSN and date of birth stay encrypted in the raw schema
        -- (docs/data-protection.md); analysts get these parts of them
        ssn_last4,

        -- numbers
        birth_year,

        -- timestamps
        created_at

    from source

)

select * from renamed
