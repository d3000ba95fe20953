with

source as (

    select * from {{ source('ops', 'credit_holds') }}

),

renamed as (

    select
        -- ids
        hold_id,
        release_id,
        account_id,
        customer_id,
        run_id as held_run_id,
        released_run_id,

        -- strings
        reasons,
        stage,
        currency,
        release_reason,
        hold_file,
        release_file,

        -- numbers
        total_open,
        collectible_amount,
        credit_limit,
        released_total_open,
        released_collectible_amount,

        -- dates
        held_on,
        released_on,

        -- timestamps
        held_at,
        released_at

    from source

)

select * from renamed
