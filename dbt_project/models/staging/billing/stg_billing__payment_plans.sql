with

source as (

    select * from {{ source('billing', 'payment_plans') }}

),

renamed as (

    select
        -- ids
        plan_id,
        account_id,
        installment_no,

        -- strings
        kind as plan_kind,

        -- numerics
        amount as installment_amount,

        -- dates
        due_date,
        created_date,
        cancelled_date

    from source

)

select * from renamed
