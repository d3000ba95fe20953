-- One row per installment of every plan or promise created by the as-of date: when it is due,
-- the last day of its grace period, what is still unpaid of it and of the installments before
-- it (payments count cumulatively, oldest installment first), what stays to pay under the
-- plan once that is paid, and the plan's status. The installment reminders read it
-- (flows/lib/plan_servicing.py).
with

installments as (

    select * from {{ ref('int_payment_plan_installments') }}

),

plans as (

    select * from {{ ref('int_payment_plans') }}

),

amounts as (

    select
        installments.*,
        plans.plan_status,
        plans.installments,
        least(installments.paid_by_as_of, plans.total_amount) as plan_paid,
        greatest(installments.cumulative_due - installments.paid_by_as_of, 0) as unpaid,
        greatest(
            plans.total_amount
            - greatest(installments.cumulative_due, installments.paid_by_as_of),
            0
        ) as remaining_after
    from installments
    inner join plans
        on installments.plan_id = plans.plan_id

),

final as (

    select
        plan_id,
        installment_no,
        account_id,
        {{ as_of_date() }} as as_of_date,
        plan_kind,
        plan_source,
        plan_status,
        installments,
        due_date,
        deadline as grace_end_date,
        {{ money('installment_amount') }} as installment_amount,
        {{ money('cumulative_due') }} as cumulative_due,
        {{ money('plan_paid') }} as plan_paid_amount,
        {{ money('unpaid') }} as unpaid_amount,
        {{ money('remaining_after') }} as remaining_after_amount,
        is_paid
    from amounts

)

select * from final
