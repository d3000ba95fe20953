-- Each settlement recorded in recoup by the as-of date, with what it recovered: the payments
-- towards it (fct_payment_plans.paid_amount, at most the settlement amount) against the
-- balance it was agreed on. forgiven_amount is what the agreement forgives (balance less
-- settlement amount); written_off_amount is the write-off recommended to billing once it was
-- paid in full (ops.write_off_recommendations, recommended by the as-of date): what the
-- account still owed then, which differs from forgiven_amount when the balance moved since.
with

settlements as (

    select
        agreement_id,
        account_id,
        currency,
        approved_by,
        balance_at_agreement,
        total_amount,
        forgiven_amount,
        agreed_date,
        settled_date
    from {{ ref('stg_ops__agreements') }}
    where
        agreement_kind = 'settlement'
        and agreed_date <= {{ as_of_date() }}

),

settlement_plans as (

    select
        plan_id,
        plan_status,
        paid_amount,
        remaining_amount
    from {{ ref('fct_payment_plans') }}
    where plan_source = 'recoup'

),

write_offs as (

    select
        agreement_id,
        write_off_amount,
        recommended_on
    from {{ ref('stg_ops__write_off_recommendations') }}
    where recommended_on <= {{ as_of_date() }}

),

final as (

    select
        settlements.agreement_id,
        settlements.account_id,
        settlements.currency,
        {{ as_of_date() }} as as_of_date,
        settlements.agreed_date,
        strftime(settlements.agreed_date, '%Y-%m') as agreed_month,
        settlements.approved_by,
        settlement_plans.plan_status as settlement_status,
        settlements.balance_at_agreement,
        settlements.total_amount as settlement_amount,
        {{ money('coalesce(settlement_plans.paid_amount, 0)') }} as paid_amount,
        coalesce(
            settlement_plans.remaining_amount, settlements.total_amount
        ) as remaining_amount,
        settlements.forgiven_amount,
        write_offs.write_off_amount as written_off_amount,
        write_offs.agreement_id is not null as is_written_off,
        case
            when settlements.settled_date <= {{ as_of_date() }}
                then settlements.settled_date
        end as settled_date,
        write_offs.recommended_on as written_off_date,
        cast(
            coalesce(settlement_plans.paid_amount, 0)
            / nullif(settlements.balance_at_agreement, 0) as double
        ) as recovery_rate
    from settlements
    left join settlement_plans
        on settlements.agreement_id = settlement_plans.plan_id
    left join write_offs
        on settlements.agreement_id = write_offs.agreement_id

)

select * from final
