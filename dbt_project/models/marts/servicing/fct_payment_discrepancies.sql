-- The payment discrepancy work queue (issue 10): one row per open item on the as-of date,
-- with its reason, owner and age. Every rule reads facts dated on or before the as-of date and
-- is recomputed from them on every build, so an item leaves the queue by itself when the
-- billing export (or the agency's remittance data) no longer shows the problem. The rules are
-- documented per reason in _servicing__models.yml.
--
-- Not here, because ingest quarantines them (flows/lib/link_checks.py) and they never reach
-- the warehouse: payments naming an unknown account or invoice (orphan_foreign_key, held until
-- the parent arrives), a payment naming another account's invoice (invoice_of_other_account),
-- a reversal of an unknown payment (orphan_foreign_key), of itself (bad_reversal), of another
-- account's payment or of a different amount as loaded (reversal_of_other_account,
-- reversal_amount_mismatch), a second reversal of one payment (duplicate_reversal), and an
-- amount in another currency than its account's as loaded (currency_mismatch). What can still
-- arrive is covered: a reversal dated before its original, reversing a reversal, or whose
-- original a later batch changed; amounts whose account a later batch moved to another
-- currency; remittances the agency import checked against the placement, not the account.
with

payments as (

    select * from {{ ref('int_billing_payments_received') }}

),

payments_in_effect as (

    select * from payments
    where is_in_effect

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

adjustments as (

    select * from {{ ref('stg_billing__adjustments') }}
    where effective_date <= {{ as_of_date() }}

),

ledger_items as (

    select * from {{ ref('int_ledger_items') }}

),

balances as (

    select * from {{ ref('int_account_balances') }}

),

-- unapplied cash on a closed account: the account's credit balance, attributed to its latest
-- payments (newest first) until it is covered; older payments paid what was owed
closed_account_payments as (

    select
        payments_in_effect.*,
        balances.credit_balance,
        coalesce(
            sum(payments_in_effect.amount) over (
                partition by payments_in_effect.account_id
                order by payments_in_effect.received_date desc, payments_in_effect.payment_id desc
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as later_payments
    from payments_in_effect
    inner join balances
        on payments_in_effect.account_id = balances.account_id
    where
        payments_in_effect.account_status = 'closed'
        and balances.credit_balance > 0

),

payment_to_closed_account as (

    select
        'payment_to_closed_account' as reason,
        'payment' as item_type,
        payment_id as item_id,
        account_id,
        customer_id,
        received_date as item_date,
        {{ money('least(amount, credit_balance - later_payments)') }} as amount,
        currency,
        'payment received on a closed account; '
        || {{ money('least(amount, credit_balance - later_payments)') }}
        || ' of it is unapplied cash in the account''s credit balance' as detail
    from closed_account_payments
    where credit_balance - later_payments > 0

),

-- an invoice's excess (linked credits beyond its amount and linked charges), attributed to its
-- linked credits newest first; only the part that falls on a payment is a payment discrepancy
-- (a credit note issued after the invoice was paid leaves a credit to refund, not an error)
linked_credits as (

    select
        ledger_items.item_id,
        ledger_items.item_kind,
        ledger_items.amount,
        invoices.invoice_number,
        invoices.excess_credit,
        coalesce(
            sum(ledger_items.amount) over (
                partition by ledger_items.linked_invoice_id
                order by ledger_items.item_date desc, ledger_items.item_id desc
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as later_credits
    from ledger_items
    inner join {{ ref('int_invoices_after_linked_items') }} as invoices
        on ledger_items.linked_invoice_id = invoices.invoice_id
    where
        ledger_items.side = 'credit'
        and invoices.excess_credit > 0

),

payment_exceeds_invoice as (

    select
        'payment_exceeds_invoice' as reason,
        'payment' as item_type,
        payments.payment_id as item_id,
        payments.account_id,
        payments.customer_id,
        payments.received_date as item_date,
        {{ money('least(linked_credits.amount, linked_credits.excess_credit'
            ' - linked_credits.later_credits)') }} as amount,
        payments.currency,
        'payment exceeds what was left to pay on invoice ' || linked_credits.invoice_number
        || ' by '
        || {{ money('least(linked_credits.amount, linked_credits.excess_credit'
            ' - linked_credits.later_credits)') }}
        || '; the excess is unapplied cash' as detail
    from linked_credits
    inner join payments_in_effect as payments
        on linked_credits.item_id = payments.payment_id
    where
        linked_credits.item_kind = 'payment'
        and linked_credits.excess_credit - linked_credits.later_credits > 0

),

-- the payment names an invoice of its account that is not issued by the as-of date: the link
-- is unknown on that date and the payment is unallocated credit
payment_to_unissued_invoice as (

    select
        'payment_to_unissued_invoice' as reason,
        'payment' as item_type,
        payments.payment_id as item_id,
        payments.account_id,
        payments.customer_id,
        payments.received_date as item_date,
        payments.amount,
        payments.currency,
        'payment names invoice ' || invoices.invoice_number || ', not issued until '
        || strftime(invoices.issue_date, '%Y-%m-%d')
        || '; until then it is unallocated credit' as detail
    from payments_in_effect as payments
    inner join {{ ref('stg_billing__invoices') }} as invoices
        on payments.invoice_id = invoices.invoice_id
    where invoices.issue_date > {{ as_of_date() }}

),

-- a plan or promise runs from its created_date to its last due date + plan_grace_days, and
-- stops on its cancelled_date
plans as (

    select
        plan_id,
        account_id,
        min(created_date) as created_date,
        min(cancelled_date) as cancelled_date,
        max(due_date) + {{ var('plan_grace_days') }} as runs_until,
        sum(installment_amount) as total_amount
    from {{ ref('stg_billing__payment_plans') }}
    where created_date <= {{ as_of_date() }}
    group by plan_id, account_id

),

-- the amounts a running plan expects: any of its installment amounts, or its total (the
-- plan paid off at once)
plan_amounts as (

    select
        plan_id,
        installment_amount as amount
    from {{ ref('stg_billing__payment_plans') }}

    union

    select
        plan_id,
        total_amount as amount
    from plans

),

payments_during_plans as (

    select
        payments.payment_id,
        payments.account_id,
        payments.customer_id,
        payments.received_date,
        payments.amount,
        payments.currency,
        max_by(
            plans.plan_id, strftime(plans.created_date, '%Y-%m-%d') || plans.plan_id
        ) as latest_plan_id,
        count(plan_amounts.plan_id) as matched_amounts
    from payments_in_effect as payments
    inner join plans
        on
            payments.account_id = plans.account_id
            and payments.received_date between plans.created_date and plans.runs_until
            and (plans.cancelled_date is null or payments.received_date < plans.cancelled_date)
    left join plan_amounts
        on
            plans.plan_id = plan_amounts.plan_id
            and payments.amount = plan_amounts.amount
    group by
        payments.payment_id,
        payments.account_id,
        payments.customer_id,
        payments.received_date,
        payments.amount,
        payments.currency

),

plan_installment_mismatch as (

    select
        'plan_installment_mismatch' as reason,
        'payment' as item_type,
        payment_id as item_id,
        account_id,
        customer_id,
        received_date as item_date,
        amount,
        currency,
        'payment of ' || amount || ' matches no installment amount (nor the total) of plan '
        || latest_plan_id || ', running on its date' as detail
    from payments_during_plans
    where matched_amounts = 0

),

-- the (account, amount, received date) keys two or more payments in effect share: the
-- self-join below then pairs only those payments, not all of them (at 1M accounts the pairing
-- of every payment with every other on its key was the slowest step of the build)
shared_payment_keys as (

    select
        account_id,
        amount,
        received_date
    from payments_in_effect
    group by account_id, amount, received_date
    having count(*) > 1

),

payments_sharing_a_key as (

    select payments_in_effect.*
    from payments_in_effect
    inner join shared_payment_keys
        on
            payments_in_effect.account_id = shared_payment_keys.account_id
            and payments_in_effect.amount = shared_payment_keys.amount
            and payments_in_effect.received_date = shared_payment_keys.received_date

),

-- two payments in effect with the same account, amount and received date; two payments that
-- name different invoices are two intended payments, not a duplicate
suspected_duplicate_payment as (

    select
        'suspected_duplicate_payment' as reason,
        'payment' as item_type,
        payments.payment_id as item_id,
        payments.account_id,
        payments.customer_id,
        payments.received_date as item_date,
        payments.amount,
        payments.currency,
        'same account, amount and received date as payment '
        || string_agg(others.payment_id, ', ' order by others.payment_id) as detail
    from payments_sharing_a_key as payments
    inner join payments_sharing_a_key as others
        on
            payments.account_id = others.account_id
            and payments.amount = others.amount
            and payments.received_date = others.received_date
            and payments.payment_id <> others.payment_id
            and coalesce(payments.invoice_id = others.invoice_id, true)
    group by
        payments.payment_id,
        payments.account_id,
        payments.customer_id,
        payments.received_date,
        payments.amount,
        payments.currency

),

-- a reversal received by the as-of date that undoes no payment in effect before it
reversals as (

    select
        reversals.payment_id,
        reversals.account_id,
        reversals.customer_id,
        reversals.received_date,
        reversals.amount,
        reversals.currency,
        case
            when originals.payment_id is null
                then
                    'reverses payment ' || reversals.reverses_payment_id
                    || ', which the billing export does not hold'
            when originals.is_reversal
                then
                    'reverses ' || originals.payment_id
                    || ', itself a reversal: it undoes no payment'
            when originals.account_id <> reversals.account_id
                then 'reverses payment ' || originals.payment_id || ' of another account'
            when originals.amount <> reversals.amount
                then
                    'reverses payment ' || originals.payment_id || ' of ' || originals.amount
                    || ', not of ' || reversals.amount
            when originals.received_date > {{ as_of_date() }}
                then
                    'reverses payment ' || originals.payment_id
                    || ', not received by the as-of date'
            when originals.received_date > reversals.received_date
                then
                    'received before payment ' || originals.payment_id
                    || ', which it reverses (received '
                    || strftime(originals.received_date, '%Y-%m-%d') || ')'
        end as detail
    from payments as reversals
    left join {{ ref('stg_billing__payments') }} as originals
        on reversals.reverses_payment_id = originals.payment_id
    where reversals.is_reversal

),

reversal_without_original as (

    select
        'reversal_without_original' as reason,
        'payment' as item_type,
        payment_id as item_id,
        account_id,
        customer_id,
        received_date as item_date,
        amount,
        currency,
        detail
    from reversals
    where detail is not null

),

-- an amount whose currency is not its account's: ingest checks it against the account as
-- loaded, so this is an account a later batch moved to another currency
currency_mismatch as (

    select
        'currency_mismatch' as reason,
        'payment' as item_type,
        payment_id as item_id,
        account_id,
        customer_id,
        received_date as item_date,
        amount,
        currency,
        'payment in ' || currency || ' on an account in ' || account_currency as detail
    from payments_in_effect
    where currency <> account_currency

    union all

    select
        'currency_mismatch' as reason,
        'adjustment' as item_type,
        adjustments.adjustment_id as item_id,
        adjustments.account_id,
        accounts.customer_id,
        adjustments.effective_date as item_date,
        adjustments.amount,
        adjustments.currency,
        replace(adjustments.adjustment_kind, '_', ' ') || ' in ' || adjustments.currency
        || ' on an account in ' || accounts.currency as detail
    from adjustments
    inner join accounts
        on adjustments.account_id = accounts.account_id
    where adjustments.currency <> accounts.currency

),

-- refunds beyond the account's unallocated credit (int_account_credit_pool.refund_shortfall),
-- attributed to its refunds newest first
refunds as (

    select
        ledger_items.item_id,
        ledger_items.account_id,
        ledger_items.item_date,
        ledger_items.amount,
        pool.refund_shortfall,
        coalesce(
            sum(ledger_items.amount) over (
                partition by ledger_items.account_id
                order by ledger_items.item_date desc, ledger_items.item_id desc
                rows between unbounded preceding and 1 preceding
            ),
            0
        ) as later_refunds
    from ledger_items
    inner join {{ ref('int_account_credit_pool') }} as pool
        on ledger_items.account_id = pool.account_id
    where
        ledger_items.side = 'refund'
        and pool.refund_shortfall > 0

),

refund_exceeds_credit as (

    select
        'refund_exceeds_credit' as reason,
        'adjustment' as item_type,
        refunds.item_id,
        refunds.account_id,
        accounts.customer_id,
        refunds.item_date,
        {{ money('least(refunds.amount, refunds.refund_shortfall - refunds.later_refunds)') }}
            as amount,
        adjustments.currency,
        'refund of ' || refunds.amount || ' exceeds the credit available by '
        || {{ money('least(refunds.amount, refunds.refund_shortfall - refunds.later_refunds)') }}
            as detail
    from refunds
    inner join adjustments
        on refunds.item_id = adjustments.adjustment_id
    inner join accounts
        on refunds.account_id = accounts.account_id
    where refunds.refund_shortfall - refunds.later_refunds > 0

),

-- fct_disputes.upheld_without_credit_note: upheld by the as-of date, and the credit notes
-- effective since its opening fall short of its amount (the whole invoice when it has none)
upheld_dispute_without_credit_note as (

    select
        'upheld_dispute_without_credit_note' as reason,
        'dispute' as item_type,
        disputes.dispute_id as item_id,
        disputes.account_id,
        accounts.customer_id,
        disputes.resolved_date as item_date,
        coalesce(disputes.disputed_amount, invoices.amount) as amount,
        accounts.currency,
        'dispute upheld with no credit note for its amount on '
        || coalesce('invoice ' || invoices.invoice_number, 'the account') as detail
    from {{ ref('fct_disputes') }} as disputes
    inner join accounts
        on disputes.account_id = accounts.account_id
    left join {{ ref('stg_billing__invoices') }} as invoices
        on disputes.invoice_id = invoices.invoice_id
    where disputes.upheld_without_credit_note

),

remittances as (

    select * from {{ ref('fct_remittance_reconciliation') }}

),

remittance_discrepancies as (

    select
        'remittance_currency_mismatch' as reason,
        'remittance' as item_type,
        remittance_key as item_id,
        account_id,
        customer_id,
        paid_date as item_date,
        collected_amount as amount,
        currency,
        'agency ' || agency_id || ' remitted in ' || currency || '; '
        || coalesce(
            'the account is in ' || account_currency, 'the account is not in the billing export'
        ) as detail
    from remittances
    where is_currency_mismatch

    union all

    select
        'remittance_paid_after_recall' as reason,
        'remittance' as item_type,
        remittance_key as item_id,
        account_id,
        customer_id,
        paid_date as item_date,
        collected_amount as amount,
        currency,
        'agency ' || agency_id || ' collected after the placement was recalled' as detail
    from remittances
    where is_paid_after_recall

),

items as (

    select * from payment_to_closed_account
    union all
    select * from payment_exceeds_invoice
    union all
    select * from payment_to_unissued_invoice
    union all
    select * from plan_installment_mismatch
    union all
    select * from suspected_duplicate_payment
    union all
    select * from reversal_without_original
    union all
    select * from currency_mismatch
    union all
    select * from refund_exceeds_credit
    union all
    select * from upheld_dispute_without_credit_note
    union all
    select * from remittance_discrepancies

),

final as (

    select
        md5(concat_ws('|', items.reason, items.item_type, items.item_id)) as discrepancy_key,
        items.reason,
        items.account_id,
        coalesce(accounts.customer_id, items.customer_id) as customer_id,
        items.item_type,
        items.item_id,
        items.item_date,
        {{ money('items.amount') }} as amount,
        items.currency,
        items.detail,
        '{{ var("discrepancy_owner", "billing-ops") | replace("'", "''") }}' as owner,
        {{ as_of_date() }} as as_of_date,
        {{ as_of_date() }} - items.item_date as age_days
    from items
    left join accounts
        on items.account_id = accounts.account_id

)

select * from final
