-- The itemization of each account's debt since its itemization date, for the validation
-- notice of Regulation F 1006.34 (third-party mode) and for placement files. The
-- itemization date is the last statement date (1006.34(b)(3)(i)): the latest invoice issue
-- date on or before the as-of date, the same kind of reference date for every account, so no
-- invoice is issued after it. Interest, fees, payments and credits since that date are the
-- items dated after it; the amount on the itemization date is the current amount less the
-- charges since, plus the payments and credits since, so the itemization always closes:
-- amount on the itemization date + interest + fees - payments - credits = current amount.
with

balances as (

    select * from {{ ref('int_account_balances') }}
    where total_open > 0

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

statements as (

    select
        account_id,
        max(issue_date) as itemization_date
    from {{ ref('int_invoices_issued') }}
    group by account_id

),

items as (

    select * from {{ ref('int_ledger_items') }}

),

since as (

    select
        items.account_id,
        sum(case when items.item_kind = 'interest' then items.amount else 0 end)
            as interest_since,
        sum(case when items.item_kind = 'fee' then items.amount else 0 end) as fees_since,
        sum(case when items.item_kind = 'payment' then items.amount else 0 end)
            as payments_since,
        sum(
            case when items.item_kind in ('credit_note', 'write_off') then items.amount else 0 end
        ) as credits_since
    from items
    inner join statements
        on items.account_id = statements.account_id
    where items.item_date > statements.itemization_date
    group by items.account_id

),

final as (

    select
        balances.account_id,
        accounts.customer_id,
        {{ as_of_date() }} as as_of_date,
        accounts.currency,
        statements.itemization_date,
        {{ money(
            'balances.total_open - coalesce(since.interest_since, 0)'
            ' - coalesce(since.fees_since, 0) + coalesce(since.payments_since, 0)'
            ' + coalesce(since.credits_since, 0)'
        ) }} as amount_on_itemization_date,
        {{ money('coalesce(since.interest_since, 0)') }} as interest_since,
        {{ money('coalesce(since.fees_since, 0)') }} as fees_since,
        {{ money('coalesce(since.payments_since, 0)') }} as payments_since,
        {{ money('coalesce(since.credits_since, 0)') }} as credits_since,
        balances.total_open as current_amount
    from balances
    inner join accounts
        on balances.account_id = accounts.account_id
    inner join statements
        on balances.account_id = statements.account_id
    left join since
        on balances.account_id = since.account_id

)

select * from final
