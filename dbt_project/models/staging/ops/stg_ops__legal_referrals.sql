with

source as (

    select * from {{ source('ops', 'legal_referrals') }}

),

renamed as (

    select
        -- ids
        referral_id,
        account_id,
        customer_id,
        run_id as referred_run_id,
        withdrawn_run_id,

        -- strings
        attorney,
        currency,
        state as statute_state,
        withdrawn_reason,
        referral_file,
        withdrawal_file,

        -- numbers
        collectible_amount,
        total_open,
        days_past_due,
        statute_years,
        withdrawn_total_open,
        withdrawn_collectible_amount,

        -- dates
        referred_on,
        oldest_due_date,
        last_payment_date,
        sol_expires_on,
        withdrawn_on,

        -- timestamps
        referred_at,
        withdrawn_at

    from source

)

select * from renamed
