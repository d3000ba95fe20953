-- The settlements recorded in recoup per month they were agreed and currency (amounts are
-- never summed across currencies), from fct_settlement_recovery so the two marts agree:
-- recovery_rate = paid / balance at agreement over every settlement of the month, broken and
-- cancelled ones included (what they paid counts, what they owe does too).
with

settlements as (

    select
        agreed_month,
        currency,
        settlement_status,
        balance_at_agreement,
        settlement_amount,
        paid_amount,
        forgiven_amount,
        written_off_amount,
        is_written_off
    from {{ ref('fct_settlement_recovery') }}

),

months as (

    select
        agreed_month,
        currency,
        count(*) as settlements,
        count(*) filter (where settlement_status = 'kept') as settlements_kept,
        count(*) filter (where settlement_status = 'broken') as settlements_broken,
        count(*) filter (where settlement_status = 'active') as settlements_active,
        count(*) filter (where settlement_status = 'cancelled') as settlements_cancelled,
        count(*) filter (where is_written_off) as settlements_written_off,
        sum(balance_at_agreement) as balance_at_agreement,
        sum(settlement_amount) as settlement_amount,
        sum(paid_amount) as paid_amount,
        sum(forgiven_amount) as forgiven_amount,
        coalesce(sum(written_off_amount), 0) as written_off_amount
    from settlements
    group by agreed_month, currency

),

final as (

    select
        agreed_month,
        currency,
        {{ as_of_date() }} as as_of_date,
        settlements,
        settlements_kept,
        settlements_broken,
        settlements_active,
        settlements_cancelled,
        settlements_written_off,
        {{ money('balance_at_agreement') }} as balance_at_agreement,
        {{ money('settlement_amount') }} as settlement_amount,
        {{ money('paid_amount') }} as paid_amount,
        {{ money('forgiven_amount') }} as forgiven_amount,
        {{ money('written_off_amount') }} as written_off_amount,
        cast(paid_amount / nullif(balance_at_agreement, 0) as double) as recovery_rate
    from months

)

select * from final
