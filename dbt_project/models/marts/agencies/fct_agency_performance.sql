-- How much each agency recovers, by the month accounts were placed with it (a cohort) and by
-- currency: amounts are never summed across currencies. Built from fct_agency_placements, so
-- the two marts agree; like it, only facts dated on or before the as-of date count.
--   net_recovered = collected - commission; net_recovery_rate = net_recovered / placed_balance
with

placements as (

    select
        placement_id,
        agency_id,
        account_id,
        currency,
        placement_status,
        recall_reason,
        placed_balance,
        collected_to_date,
        commission_to_date,
        strftime(placed_date, '%Y-%m') as placement_month
    from {{ ref('fct_agency_placements') }}

),

cohorts as (

    select
        agency_id,
        placement_month,
        currency,
        count(distinct account_id) as accounts_placed,
        count(*) as placements,
        count(
            distinct case when placement_status = 'recalled' then account_id end
        ) as accounts_recalled,
        sum(placed_balance) as placed_balance,
        sum(collected_to_date) as collected_amount,
        sum(commission_to_date) as commission_amount
    from placements
    group by agency_id, placement_month, currency

),

recalls_per_reason as (

    select
        agency_id,
        placement_month,
        currency,
        coalesce(recall_reason, 'unspecified') as recall_reason,
        count(distinct account_id) as accounts
    from placements
    where placement_status = 'recalled'
    group by agency_id, placement_month, currency, coalesce(recall_reason, 'unspecified')

),

-- every cohort, with its recalled accounts per reason (an empty map when none)
recalls as (

    select
        cohorts.agency_id,
        cohorts.placement_month,
        cohorts.currency,
        map_from_entries(
            coalesce(
                list(
                    struct_pack(
                        key := recalls_per_reason.recall_reason,
                        value := recalls_per_reason.accounts
                    )
                    order by recalls_per_reason.recall_reason
                ) filter (where recalls_per_reason.recall_reason is not null),
                []
            )
        ) as recalled_by_reason
    from cohorts
    left join recalls_per_reason
        on
            cohorts.agency_id = recalls_per_reason.agency_id
            and cohorts.placement_month = recalls_per_reason.placement_month
            and cohorts.currency = recalls_per_reason.currency
    group by cohorts.agency_id, cohorts.placement_month, cohorts.currency

),

final as (

    select
        cohorts.agency_id,
        cohorts.placement_month,
        cohorts.currency,
        {{ as_of_date() }} as as_of_date,
        cohorts.accounts_placed,
        cohorts.placements,
        {{ money('cohorts.placed_balance') }} as placed_balance,
        {{ money('cohorts.collected_amount') }} as collected_amount,
        {{ money('cohorts.commission_amount') }} as commission_amount,
        {{ money('cohorts.collected_amount - cohorts.commission_amount') }} as net_recovered,
        cast(
            (cohorts.collected_amount - cohorts.commission_amount)
            / nullif(cohorts.placed_balance, 0) as double
        ) as net_recovery_rate,
        cohorts.accounts_recalled,
        recalls.recalled_by_reason
    from cohorts
    inner join recalls
        on
            cohorts.agency_id = recalls.agency_id
            and cohorts.placement_month = recalls.placement_month
            and cohorts.currency = recalls.currency

)

select * from final
