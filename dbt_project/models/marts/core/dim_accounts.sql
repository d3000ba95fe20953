with

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

final as (

    select
        account_id,
        customer_id,
        currency,
        segment,
        account_status,
        credit_limit,
        opened_date
    from accounts

)

select * from final
