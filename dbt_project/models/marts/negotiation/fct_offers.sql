-- Every plan and settlement offer made by the as-of date, with the agreement recorded in
-- recoup that took it up and how that agreement stands on the as-of date (its plan_status in
-- fct_payment_plans, so the two marts agree). An agreement takes up one offer at most, of its
-- own account and kind: the offer its offer_id names (set when it was recorded), else the
-- offer recording would have named, the same rule as flows/lib/agreements.py: of the offers
-- made on or before the agreed date and expiring on or after it, the one of the agreement's
-- length when there is one, then the latest. An agreement dated after its offer expired takes
-- up nothing. An offer taken up by two agreements (one cancelled, another agreed in its place)
-- shows the later.
with

offers as (

    select
        offer_id,
        account_id,
        customer_id,
        segment,
        currency,
        offer_kind,
        stage,
        plan_length,
        installment_amount,
        offer_amount,
        balance_at_offer,
        percent,
        requires_approval,
        offer_date,
        expires_on
    from {{ ref('stg_ops__offers') }}
    where offer_date <= {{ as_of_date() }}

),

agreements as (

    select
        agreement_id,
        account_id,
        agreement_kind,
        installments,
        offer_id,
        agreed_date
    from {{ ref('stg_ops__agreements') }}
    where agreed_date <= {{ as_of_date() }}

),

recoup_plans as (

    select
        plan_id,
        plan_status,
        total_amount,
        paid_amount
    from {{ ref('fct_payment_plans') }}
    where plan_source = 'recoup'

),

candidate_offers as (

    select
        agreements.agreement_id,
        agreements.agreed_date,
        offers.offer_id,
        row_number() over (
            partition by agreements.agreement_id
            order by
                coalesce(agreements.offer_id = offers.offer_id, false) desc,
                coalesce(agreements.installments = offers.plan_length, false) desc,
                offers.offer_date desc,
                offers.offer_id desc
        ) as preference
    from agreements
    inner join offers
        on
            agreements.account_id = offers.account_id
            and agreements.agreement_kind = offers.offer_kind
            and (
                agreements.offer_id = offers.offer_id
                or agreements.agreed_date between offers.offer_date and offers.expires_on
            )

),

offers_taken_up as (

    select
        offer_id,
        agreement_id,
        agreed_date,
        row_number() over (
            partition by offer_id
            order by agreed_date desc, agreement_id desc
        ) as recency
    from candidate_offers
    where preference = 1

),

final as (

    select
        offers.offer_id,
        offers.account_id,
        offers.customer_id,
        offers.segment,
        offers.currency,
        {{ as_of_date() }} as as_of_date,
        offers.offer_kind,
        offers.stage,
        offers.plan_length,
        offers.installment_amount,
        offers.offer_amount,
        offers.balance_at_offer,
        offers.percent,
        offers.requires_approval,
        offers.offer_date,
        strftime(offers.offer_date, '%Y-%m') as offer_month,
        offers.expires_on,
        offers.expires_on < {{ as_of_date() }} as is_expired,
        offers_taken_up.agreement_id is not null as is_accepted,
        offers_taken_up.agreement_id,
        offers_taken_up.agreed_date,
        cast(
            offers_taken_up.agreed_date - offers.offer_date as integer
        ) as days_to_accept,
        recoup_plans.plan_status as agreement_status,
        recoup_plans.total_amount as agreement_amount,
        recoup_plans.paid_amount as agreement_paid_amount
    from offers
    left join offers_taken_up
        on
            offers.offer_id = offers_taken_up.offer_id
            and offers_taken_up.recency = 1
    left join recoup_plans
        on offers_taken_up.agreement_id = recoup_plans.plan_id

)

select * from final
