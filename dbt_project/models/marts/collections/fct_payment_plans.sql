with

plans as (

    select * from {{ ref('int_payment_plans') }}

),

final as (

    select
        plan_id,
        account_id,
        {{ as_of_date() }} as as_of_date,
        plan_kind,
        plan_source,
        plan_status,
        created_date,
        cancelled_date,
        installments,
        total_amount,
        paid_amount,
        {{ money('total_amount - paid_amount') }} as remaining_amount,
        next_installment_no,
        next_due_date,
        next_amount,
        broken_installment_no,
        broken_on
    from plans

)

select * from final
