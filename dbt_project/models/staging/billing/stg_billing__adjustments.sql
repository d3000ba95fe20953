with

source as (

    select * from {{ source('billing', 'adjustments') }}

),

renamed as (

    select
        -- ids
        adjustment_id,
        account_id,
        invoice_id,

        -- strings
        kind as adjustment_kind,
        currency,
        reason,

        -- numerics
        amount,

        -- dates
        effective_date

    from source

)

select * from renamed
