with

source as (

    select * from {{ source('billing', 'payments') }}

),

renamed as (

    select
        -- ids
        payment_id,
        account_id,
        invoice_id,
        reverses_payment_id,

        -- strings
        currency,
        method as payment_method,

        -- numerics
        amount,

        -- booleans
        reverses_payment_id is not null as is_reversal,

        -- dates
        received_date

    from source

)

select * from renamed
