-- Every placement with a collection agency made by the as-of date, with its status on that
-- date and what the agency collected on it by then. Only facts dated on or before the as-of
-- date count: a recall dated later leaves the placement open, a remittance paid later is not
-- counted yet.
with

placements as (

    select
        placement_id,
        agency_id,
        account_id,
        customer_id,
        currency,
        placed_balance,
        commission_rate,
        days_past_due,
        placed_date,
        recalled_date,
        recall_reason
    from {{ ref('stg_ops__placements') }}
    where placed_date <= {{ as_of_date() }}

),

remittances as (

    select
        placement_id,
        collected_amount,
        commission_amount,
        paid_date
    from {{ ref('stg_ops__remittances') }}
    where paid_date <= {{ as_of_date() }}

),

collected_per_placement as (

    select
        placement_id,
        count(*) as remittances,
        sum(collected_amount) as collected_amount,
        sum(commission_amount) as commission_amount,
        max(paid_date) as last_paid_date
    from remittances
    group by placement_id

),

as_of_status as (

    select
        *,
        coalesce(recalled_date <= {{ as_of_date() }}, false) as is_recalled
    from placements

),

final as (

    select
        as_of_status.placement_id,
        as_of_status.agency_id,
        as_of_status.account_id,
        as_of_status.customer_id,
        {{ as_of_date() }} as as_of_date,
        case when as_of_status.is_recalled then 'recalled' else 'open' end as placement_status,
        as_of_status.placed_date,
        case when as_of_status.is_recalled then as_of_status.recalled_date end as recalled_date,
        case when as_of_status.is_recalled then as_of_status.recall_reason end as recall_reason,
        case
            when as_of_status.is_recalled
                then as_of_status.recalled_date - as_of_status.placed_date
            else {{ as_of_date() }} - as_of_status.placed_date
        end as days_placed,
        as_of_status.days_past_due as days_past_due_at_placement,
        as_of_status.currency,
        as_of_status.placed_balance,
        as_of_status.commission_rate,
        coalesce(collected_per_placement.remittances, 0) as remittances,
        {{ money('coalesce(collected_per_placement.collected_amount, 0)') }}
            as collected_to_date,
        {{ money('coalesce(collected_per_placement.commission_amount, 0)') }}
            as commission_to_date,
        {{ money(
            'coalesce(collected_per_placement.collected_amount, 0)'
            ' - coalesce(collected_per_placement.commission_amount, 0)'
        ) }} as net_recovered_to_date,
        collected_per_placement.last_paid_date
    from as_of_status
    left join collected_per_placement
        on as_of_status.placement_id = collected_per_placement.placement_id

)

select * from final
