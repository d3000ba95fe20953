with

source as (

    select * from {{ source('billing', 'accounts') }}

),

renamed as (

    select
        -- ids
        account_id,
        customer_id,

        -- strings
        currency,
        segment,
        status as account_status,

        -- numerics
        credit_limit,

        -- dates
        opened_date

    from source

)

select * from renamed
