with

customers as (

    select * from {{ ref('stg_billing__customers') }}

),

final as (

    select
        customer_id,
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
        ssn_last4,
        date_of_birth,
        created_at
    from customers

)

select * from final
