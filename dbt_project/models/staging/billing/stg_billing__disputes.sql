with

source as (

    select * from {{ source('billing', 'disputes') }}

),

renamed as (

    select
        -- ids
        dispute_id,
        account_id,
        invoice_id,

        -- strings
        resolution,

        -- numerics
        amount as disputed_amount,

        -- dates
        opened_date,
        resolved_date

    from source

)

select * from renamed
