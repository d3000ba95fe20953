-- Per account, open items minus credit balance equal the ledger net on the as-of date:
-- invoices issued + fees and interest - payments in effect - credit notes - write-offs
-- + refunds, less any refund beyond the available credit (flagged as refund_shortfall).
with

ledger as (

    select
        account_id,
        sum(
            case
                when side = 'charge' then amount
                when side = 'refund' then amount
                else -amount
            end
        ) as movements
    from {{ ref('int_ledger_items') }}
    group by account_id

),

invoiced as (

    select
        account_id,
        sum(amount) as invoiced
    from {{ ref('int_invoices_issued') }}
    group by account_id

),

aging as (

    select * from {{ ref('fct_account_aging') }}
    where as_of_date = {{ as_of_date() }}

),

pool as (

    select * from {{ ref('int_account_credit_pool') }}

),

accounts as (

    select account_id from {{ ref('stg_billing__accounts') }}

),

compared as (

    select
        accounts.account_id,
        coalesce(invoiced.invoiced, 0) + coalesce(ledger.movements, 0)
        - pool.refund_shortfall as ledger_net,
        coalesce(aging.total_open, 0) - coalesce(aging.credit_balance, 0) as aging_net
    from accounts
    left join ledger
        on accounts.account_id = ledger.account_id
    left join invoiced
        on accounts.account_id = invoiced.account_id
    left join aging
        on accounts.account_id = aging.account_id
    inner join pool
        on accounts.account_id = pool.account_id

)

select * from compared
where ledger_net <> aging_net
