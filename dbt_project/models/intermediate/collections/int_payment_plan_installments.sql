-- Installments of payment plans and promises created by the as-of date, each with what had
-- been paid towards the plan by its deadline (due date + grace). A payment counts towards one
-- plan only: the account's latest plan created on or before the payment's date (so two plans
-- never share one payment); within a plan, payments cover installments oldest first
-- (cumulatively). A payment reversed by the as-of date does not count. Billing's plans and the
-- agreements recorded in recoup (plan_source) are aged alike; an agreement's agreed date is
-- its created date.
with

billing_installments as (

    select
        plan_id,
        account_id,
        plan_kind,
        installment_no,
        due_date,
        installment_amount,
        created_date,
        cancelled_date,
        'billing' as plan_source
    from {{ ref('stg_billing__payment_plans') }}
    where created_date <= {{ as_of_date() }}

),

agreements as (

    select
        agreement_id,
        account_id,
        agreement_kind,
        agreed_date,
        cancelled_date
    from {{ ref('stg_ops__agreements') }}
    where agreed_date <= {{ as_of_date() }}

),

agreement_installments as (

    select
        agreement_id,
        installment_no,
        due_date,
        installment_amount
    from {{ ref('stg_ops__agreement_installments') }}

),

payments as (

    select * from {{ ref('int_payments_in_effect') }}

),

recoup_installments as (

    select
        agreements.agreement_id as plan_id,
        agreements.account_id,
        agreements.agreement_kind as plan_kind,
        agreement_installments.installment_no,
        agreement_installments.due_date,
        agreement_installments.installment_amount,
        agreements.agreed_date as created_date,
        agreements.cancelled_date,
        'recoup' as plan_source
    from agreements
    inner join agreement_installments
        on agreements.agreement_id = agreement_installments.agreement_id

),

installments as (

    select * from billing_installments
    union all
    select * from recoup_installments

),

plans as (

    select distinct
        plan_id,
        account_id,
        created_date
    from installments

),

payments_by_plan as (

    select
        payments.payment_id,
        payments.amount,
        payments.received_date,
        max_by(
            plans.plan_id, strftime(plans.created_date, '%Y-%m-%d') || plans.plan_id
        ) as plan_id
    from payments
    inner join plans
        on
            payments.account_id = plans.account_id
            and payments.received_date >= plans.created_date
    group by payments.payment_id, payments.amount, payments.received_date

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
    left join payments_by_plan as payments
        on cumulative.plan_id = payments.plan_id
    group by cumulative.plan_id, cumulative.installment_no

),

final as (

    select
        cumulative.plan_id,
        cumulative.account_id,
        cumulative.plan_kind,
        cumulative.plan_source,
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
