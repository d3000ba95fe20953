with

source as (

    select * from {{ source('ops', 'agreements') }}

),

renamed as (

    select
        -- ids
        agreement_id,
        account_id,
        offer_id,
        import_id,

        -- strings
        kind as agreement_kind,
        currency,
        approved_by,
        recorded_by,
        source as agreement_source,
        policy_breaches,
        cancelled_by,

        -- numbers
        installments,
        balance_at_agreement,
        total_amount,
        forgiven_amount,
        days_past_due,

        -- dates
        agreed_date,
        balance_date,
        cancelled_date,
        settled_on as settled_date,

        -- timestamps
        recorded_at,
        cancelled_at

    from source

)

select * from renamed
