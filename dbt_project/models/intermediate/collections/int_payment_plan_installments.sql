-- Installments of payment plans and promises created by the as-of date, each with what had
-- been paid towards the plan by its deadline (due date + grace). Payments count towards a
-- plan from the plan's created_date, oldest installment first (cumulatively); a payment that
-- was reversed by the as-of date does not count.
with

installments as (

    select * from {{ ref('stg_billing__payment_plans') }}
    where created_date <= {{ as_of_date() }}

),

payments as (

    select * from {{ ref('int_payments_in_effect') }}

),

cumulative as (

    select
        *,
        sum(installment_amount) over (
            partition by plan_id
            order by installment_no
        ) as cumulative_due,
        due_date + {{ var('plan_grace_days') }} as deadline
    from installments

),

paid as (

    select
        cumulative.plan_id,
        cumulative.installment_no,
        coalesce(sum(payments.amount) filter (
            where payments.received_date <= cumulative.deadline
        ), 0) as paid_by_deadline,
        coalesce(sum(payments.amount), 0) as paid_by_as_of
    from cumulative
    left join payments
        on
            cumulative.account_id = payments.account_id
            and cumulative.created_date <= payments.received_date
    group by cumulative.plan_id, cumulative.installment_no

),

final as (

    select
        cumulative.plan_id,
        cumulative.account_id,
        cumulative.plan_kind,
        cumulative.installment_no,
        cumulative.due_date,
        cumulative.deadline,
        cumulative.installment_amount,
        cumulative.cumulative_due,
        cumulative.created_date,
        cumulative.cancelled_date,
        paid.paid_by_deadline,
        paid.paid_by_as_of,
        paid.paid_by_as_of >= cumulative.cumulative_due as is_paid,
        cumulative.deadline < {{ as_of_date() }}
        and paid.paid_by_deadline < cumulative.cumulative_due as is_missed
    from cumulative
    inner join paid
        on
            cumulative.plan_id = paid.plan_id
            and cumulative.installment_no = paid.installment_no

)

select * from final
