with

source as (

    select * from {{ source('ops', 'offers') }}

),

renamed as (

    select
        -- ids
        offer_id,
        account_id,
        customer_id,
        run_id,

        -- strings
        kind as offer_kind,
        segment,
        currency,
        stage,

        -- numbers
        plan_length,
        installment_amount,
        last_installment_amount,
        offer_amount,
        balance_at_offer,
        percent,

        -- booleans
        requires_approval,

        -- dates
        offer_date,
        expires_on,

        -- timestamps
        created_at

    from source

)

select * from renamed
