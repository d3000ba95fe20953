-- One row per plan or promise created by the as-of date, with its status:
--   cancelled: cancelled_date on or before the as-of date
--   broken:    an installment unpaid more than the grace period after its due date, before
--              any cancellation; broken_on is the first day it counts as broken (the day
--              after the installment's deadline), the day the plan's hold ends
--   kept:      everything paid
--   active:    otherwise (the account is held while a plan is active)
with

installments as (

    select * from {{ ref('int_payment_plan_installments') }}

),

plans as (

    select
        plan_id,
        any_value(account_id) as account_id,
        any_value(plan_kind) as plan_kind,
        any_value(plan_source) as plan_source,
        min(created_date) as created_date,
        min(cancelled_date) as cancelled_date,
        count(*) as installments,
        sum(installment_amount) as total_amount,
        max(paid_by_as_of) as paid_amount,
        bool_and(is_paid) as all_paid,
        -- a deadline that passed after the plan was cancelled breaks nothing
        min(
            case
                when is_missed and coalesce(cancelled_date > deadline, true)
                    then installment_no
            end
        ) as broken_installment_no,
        min(
            case
                when is_missed and coalesce(cancelled_date > deadline, true)
                    then deadline + 1
            end
        ) as broken_on,
        min(case when not is_paid then installment_no end) as next_installment_no
    from installments
    group by plan_id

),

final as (

    select
        plans.plan_id,
        plans.account_id,
        plans.plan_kind,
        plans.plan_source,
        plans.created_date,
        plans.cancelled_date,
        plans.installments,
        {{ money('plans.total_amount') }} as total_amount,
        {{ money('least(plans.paid_amount, plans.total_amount)') }} as paid_amount,
        case
            when plans.cancelled_date <= {{ as_of_date() }} then 'cancelled'
            when plans.broken_installment_no is not null then 'broken'
            when plans.all_paid then 'kept'
            else 'active'
        end as plan_status,
        plans.broken_installment_no,
        plans.broken_on,
        plans.next_installment_no,
        next_installment.due_date as next_due_date,
        next_installment.installment_amount as next_amount
    from plans
    left join installments as next_installment
        on
            plans.plan_id = next_installment.plan_id
            and plans.next_installment_no = next_installment.installment_no

)

select * from final
