with

customers as (

    select * from {{ ref('stg_billing__customers') }}

),

contacts as (

    select * from {{ ref('stg_ops__customer_contacts') }}

),

final as (

    select
        customers.customer_id,
        customers.customer_type,
        customers.full_name,
        contacts.email,
        contacts.phone,
        contacts.address_line1,
        contacts.address_line2,
        contacts.city,
        contacts.state,
        contacts.postal_code,
        contacts.country,
        contacts.timezone,
        customers.language,
        customers.ssn_last4,
        customers.birth_year,
        customers.created_at,
        contacts.email_source,
        contacts.phone_source,
        contacts.address_source,
        contacts.email_updated_on,
        contacts.phone_updated_on,
        contacts.address_updated_on,
        contacts.email_updated_at,
        contacts.phone_updated_at,
        contacts.address_updated_at,
        contacts.is_address_returned,
        contacts.is_phone_invalid,
        customers.email as billing_email,
        customers.phone as billing_phone,
        customers.address_line1 as billing_address_line1,
        customers.address_line2 as billing_address_line2,
        customers.city as billing_city,
        customers.state as billing_state,
        customers.postal_code as billing_postal_code,
        customers.country as billing_country,
        customers.timezone as billing_timezone
    from customers
    inner join contacts
        on customers.customer_id = contacts.customer_id

)

select * from final
