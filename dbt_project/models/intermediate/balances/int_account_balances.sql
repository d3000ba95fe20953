-- One row per account with open items or a credit balance on the as-of date: the aging
-- buckets, totals and dispute split of SPEC §3. Amounts are in the account's currency and
-- never summed across accounts here.
with

items as (

    select * from {{ ref('int_open_items_disputed') }}

),

pool as (

    select * from {{ ref('int_account_credit_pool') }}

),

owed_before_credit as (

    select
        account_id,
        sum(amount_before_credit) as owed
    from (
        select
            account_id,
            open_after_linked as amount_before_credit
        from {{ ref('int_invoices_after_linked_items') }}
        union all
        select
            account_id,
            amount as amount_before_credit
        from {{ ref('int_ledger_items') }}
        where side = 'charge' and linked_invoice_id is null
    )
    group by account_id

),

account_level_disputes as (

    select
        account_id,
        count(*) as disputes,
        bool_or(disputed_amount is null) as whole_balance_disputed,
        sum(disputed_amount) as disputed_amount
    from {{ ref('int_open_disputes') }}
    where invoice_id is null
    group by account_id

),

aged as (

    select
        account_id,
        sum(case when aging_bucket = 'current' then open_amount else 0 end) as current,
        sum(case when aging_bucket = '1_30' then open_amount else 0 end) as dpd_1_30,
        sum(case when aging_bucket = '31_60' then open_amount else 0 end) as dpd_31_60,
        sum(case when aging_bucket = '61_90' then open_amount else 0 end) as dpd_61_90,
        sum(case when aging_bucket = '91_120' then open_amount else 0 end) as dpd_91_120,
        sum(case when aging_bucket = '121_150' then open_amount else 0 end) as dpd_121_150,
        sum(case when aging_bucket = '151_180' then open_amount else 0 end) as dpd_151_180,
        sum(case when aging_bucket = '181_plus' then open_amount else 0 end) as dpd_181_plus,
        sum(open_amount) as total_open,
        sum(disputed_amount) as invoice_disputed_amount,
        min(due_date) as oldest_due_date,
        greatest(max(days_past_due), 0) as max_days_past_due,
        greatest(
            coalesce(max(case when collectible_amount > 0 then days_past_due end), 0), 0
        ) as max_days_past_due_collectible,
        min(case when collectible_amount > 0 then due_date end) as oldest_collectible_due_date
    from items
    group by account_id

),

combined as (

    select
        pool.account_id,
        coalesce(aged.current, 0) as current,
        coalesce(aged.dpd_1_30, 0) as dpd_1_30,
        coalesce(aged.dpd_31_60, 0) as dpd_31_60,
        coalesce(aged.dpd_61_90, 0) as dpd_61_90,
        coalesce(aged.dpd_91_120, 0) as dpd_91_120,
        coalesce(aged.dpd_121_150, 0) as dpd_121_150,
        coalesce(aged.dpd_151_180, 0) as dpd_151_180,
        coalesce(aged.dpd_181_plus, 0) as dpd_181_plus,
        coalesce(aged.total_open, 0) as total_open,
        least(
            coalesce(aged.total_open, 0),
            coalesce(aged.invoice_disputed_amount, 0)
            + case
                when account_level_disputes.whole_balance_disputed
                    then coalesce(aged.total_open, 0)
                else coalesce(account_level_disputes.disputed_amount, 0)
            end
        ) as disputed_amount,
        greatest(pool.available_credit - coalesce(owed_before_credit.owed, 0), 0)
            as credit_balance,
        pool.refund_shortfall,
        aged.oldest_due_date,
        coalesce(aged.max_days_past_due, 0) as max_days_past_due,
        coalesce(aged.max_days_past_due_collectible, 0) as max_days_past_due_collectible,
        aged.oldest_collectible_due_date
    from pool
    left join aged
        on pool.account_id = aged.account_id
    left join owed_before_credit
        on pool.account_id = owed_before_credit.account_id
    left join account_level_disputes
        on pool.account_id = account_level_disputes.account_id

),

final as (

    select
        account_id,
        {{ money('current') }} as current,
        {{ money('dpd_1_30') }} as dpd_1_30,
        {{ money('dpd_31_60') }} as dpd_31_60,
        {{ money('dpd_61_90') }} as dpd_61_90,
        {{ money('dpd_91_120') }} as dpd_91_120,
        {{ money('dpd_121_150') }} as dpd_121_150,
        {{ money('dpd_151_180') }} as dpd_151_180,
        {{ money('dpd_181_plus') }} as dpd_181_plus,
        {{ money('total_open') }} as total_open,
        {{ money('disputed_amount') }} as disputed_amount,
        {{ money('credit_balance') }} as credit_balance,
        {{ money('refund_shortfall') }} as refund_shortfall,
        {{ money('total_open - disputed_amount') }} as collectible_amount,
        oldest_due_date,
        max_days_past_due,
        max_days_past_due_collectible,
        oldest_collectible_due_date
    from combined
    where total_open > 0 or credit_balance > 0

)

select * from final
