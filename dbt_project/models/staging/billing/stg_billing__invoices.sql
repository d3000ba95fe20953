with

source as (

    select * from {{ source('billing', 'invoices') }}

),

renamed as (

    select
        -- ids
        invoice_id,
        account_id,

        -- strings
        invoice_number,
        currency,
        description,

        -- numerics
        amount,

        -- dates
        issue_date,
        due_date

    from source

)

select * from renamed
