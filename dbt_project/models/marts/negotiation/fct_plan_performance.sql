-- How payment plans perform by length: billing's plans and promises and the agreements
-- recorded in recoup (fct_payment_plans, so the two marts agree), per month created, source,
-- kind, number of installments and currency (amounts are never summed across currencies),
-- with their status on the as-of date. kept_rate = kept / (kept + broken), NULL while none
-- has been kept or broken; share_paid = paid / scheduled.
with

plans as (

    select
        plan_id,
        account_id,
        plan_source,
        plan_kind,
        plan_status,
        installments,
        total_amount,
        paid_amount,
        strftime(created_date, '%Y-%m') as created_month
    from {{ ref('fct_payment_plans') }}

),

accounts as (

    select
        account_id,
        currency
    from {{ ref('dim_accounts') }}

),

performance as (

    select
        plans.created_month,
        plans.plan_source,
        plans.plan_kind,
        accounts.currency,
        cast(plans.installments as integer) as plan_length,
        count(*) as plans_started,
        count(*) filter (where plans.plan_status = 'active') as plans_active,
        count(*) filter (where plans.plan_status = 'kept') as plans_kept,
        count(*) filter (where plans.plan_status = 'broken') as plans_broken,
        count(*) filter (where plans.plan_status = 'cancelled') as plans_cancelled,
        sum(plans.total_amount) as scheduled_amount,
        sum(plans.paid_amount) as paid_amount
    from plans
    inner join accounts
        on plans.account_id = accounts.account_id
    group by
        plans.created_month,
        plans.plan_source,
        plans.plan_kind,
        accounts.currency,
        plans.installments

),

final as (

    select
        created_month,
        plan_source,
        plan_kind,
        plan_length,
        currency,
        {{ as_of_date() }} as as_of_date,
        plans_started,
        plans_active,
        plans_kept,
        plans_broken,
        plans_cancelled,
        cast(plans_kept / nullif(plans_kept + plans_broken, 0) as double) as kept_rate,
        {{ money('scheduled_amount') }} as scheduled_amount,
        {{ money('paid_amount') }} as paid_amount,
        cast(paid_amount / nullif(scheduled_amount, 0) as double) as share_paid
    from performance

)

select * from final
