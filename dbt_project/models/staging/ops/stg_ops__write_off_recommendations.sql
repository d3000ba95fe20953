with

source as (

    select * from {{ source('ops', 'write_off_recommendations') }}

),

renamed as (

    select
        -- ids
        recommendation_id,
        agreement_id,
        account_id,
        run_id,

        -- strings
        currency,
        reason,
        approved_by,
        file_path,

        -- numbers
        settled_amount,
        paid_amount,
        write_off_amount,

        -- dates
        agreed_date,
        recommended_on,

        -- timestamps
        recommended_at

    from source

)

select * from renamed
