-- Agency remittances paid by the as-of date, each with the billing payment that records the
-- same money, if any. A remittance is money the customer paid to a collection agency; when
-- the creditor also books it in the billing system it must count once. The rule:
--   a remittance is in billing when a billing payment in effect on the as-of date has the
--   same account and the same amount (the gross collected_amount) and was received from the
--   remittance's paid_date to paid_date + 30 days.
-- Remittances take payments earliest first, by (paid_date, remittance_key); each takes the
-- earliest payment still free, by (received_date, payment_id), so a billing payment matches
-- at most one remittance. Until the creditor books it, the remittance itself counts (see
-- int_payments_in_effect): either way the money counts once, from its paid_date.
with recursive

remittances as (

    select
        remittance_key,
        agency_id,
        placement_id,
        account_id,
        paid_date,
        collected_amount,
        commission_amount,
        currency
    from {{ ref('stg_ops__remittances') }}
    where paid_date <= {{ as_of_date() }}

),

billing_payments as (

    select
        payment_id,
        account_id,
        amount,
        received_date
    from {{ ref('int_billing_payments_in_effect') }}

),

candidate_lists as (

    select
        remittances.remittance_key,
        coalesce(
            list(
                billing_payments.payment_id
                order by billing_payments.received_date, billing_payments.payment_id
            ) filter (where billing_payments.payment_id is not null),
            []
        ) as candidate_payment_ids
    from remittances
    left join billing_payments
        on
            remittances.account_id = billing_payments.account_id
            and remittances.collected_amount = billing_payments.amount
            and billing_payments.received_date
            between remittances.paid_date and remittances.paid_date + 30
    group by remittances.remittance_key

),

-- the remittances competing for the same payments: same account, same amount
ordered as (

    select
        remittances.remittance_key,
        remittances.account_id,
        remittances.collected_amount,
        candidate_lists.candidate_payment_ids,
        row_number() over (
            partition by remittances.account_id, remittances.collected_amount
            order by remittances.paid_date, remittances.remittance_key
        ) as match_order
    from remittances
    inner join candidate_lists
        on remittances.remittance_key = candidate_lists.remittance_key

),

-- one step per remittance in match_order, carrying the payments already taken (free_id is a
-- lambda's parameter, not a column)
matched as (

    select
        remittance_key,
        account_id,
        collected_amount,
        match_order,
        candidate_payment_ids[1] as matched_payment_id,
        candidate_payment_ids[1:1] as taken_payment_ids
    from ordered
    where match_order = 1

    union all

    select
        ordered.remittance_key,
        ordered.account_id,
        ordered.collected_amount,
        ordered.match_order,
        list_filter(
            ordered.candidate_payment_ids,
            lambda free_id: not list_contains(matched.taken_payment_ids, free_id)  -- noqa: RF02
        )[1] as matched_payment_id,
        matched.taken_payment_ids || list_filter(
            ordered.candidate_payment_ids,
            lambda free_id: not list_contains(matched.taken_payment_ids, free_id)  -- noqa: RF02
        )[1:1] as taken_payment_ids
    from matched
    inner join ordered
        on
            matched.account_id = ordered.account_id
            and matched.collected_amount = ordered.collected_amount
            and matched.match_order + 1 = ordered.match_order

),

final as (

    select
        remittances.remittance_key,
        remittances.agency_id,
        remittances.placement_id,
        remittances.account_id,
        remittances.paid_date,
        remittances.collected_amount,
        remittances.commission_amount,
        remittances.currency,
        matched.matched_payment_id,
        billing_payments.received_date as matched_received_date,
        matched.matched_payment_id is not null as is_in_billing
    from remittances
    inner join matched
        on remittances.remittance_key = matched.remittance_key
    left join billing_payments
        on matched.matched_payment_id = billing_payments.payment_id

)

select * from final
