with

source as (

    select * from {{ source('ops', 'placements') }}

),

renamed as (

    select
        -- ids
        placement_id,
        account_id,
        customer_id,
        agency_id,
        placed_run_id,

        -- strings
        status as placement_status,
        recall_reason,
        currency,
        placement_file,
        recall_file,

        -- numbers
        placed_balance,
        principal,
        fees,
        interest,
        payments_since,
        credits_since,
        days_past_due,
        commission_rate,

        -- dates
        placed_date,
        recalled_date,
        itemization_date,
        first_delinquency_date,
        last_payment_date

    from source

)

select * from renamed
