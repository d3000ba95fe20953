with

source as (

    select * from {{ source('billing', 'account_flags') }}

),

renamed as (

    select
        -- ids
        customer_id,
        account_id,

        -- strings
        flag,

        -- dates
        start_date,
        end_date

    from source

)

select * from renamed
