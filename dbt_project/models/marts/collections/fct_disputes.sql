with

disputes as (

    select * from {{ ref('stg_billing__disputes') }}
    where opened_date <= {{ as_of_date() }}

),

-- credit notes effective from the dispute's opening to the as-of date: on its invoice for an
-- invoice dispute, anywhere on the account for an account-level one
credits_after_opening as (

    select
        disputes.dispute_id,
        sum(adjustments.amount) as credited_amount
    from disputes
    inner join {{ ref('stg_billing__adjustments') }} as adjustments
        on
            disputes.account_id = adjustments.account_id
            and (disputes.invoice_id is null or disputes.invoice_id = adjustments.invoice_id)
            and adjustments.effective_date between disputes.opened_date and {{ as_of_date() }}
    where adjustments.adjustment_kind = 'credit_note'
    group by disputes.dispute_id

),

invoices as (

    select * from {{ ref('stg_billing__invoices') }}

),

final as (

    select
        disputes.dispute_id,
        disputes.account_id,
        disputes.invoice_id,
        {{ as_of_date() }} as as_of_date,
        disputes.disputed_amount,
        disputes.opened_date,
        case
            when disputes.resolved_date <= {{ as_of_date() }} then disputes.resolved_date
        end as resolved_date,
        case
            when disputes.resolved_date <= {{ as_of_date() }}
                then coalesce(disputes.resolution, 'resolved')
            else 'open'
        end as dispute_status,
        disputes.invoice_id is null as is_account_level,
        -- an upheld dispute is settled by a credit note for its amount (the whole invoice when
        -- it has none); short of that it belongs in the discrepancy queue
        disputes.resolution = 'upheld'
        and disputes.resolved_date <= {{ as_of_date() }}
        and coalesce(credits_after_opening.credited_amount, 0)
        < coalesce(disputes.disputed_amount, invoices.amount, 0.01) as upheld_without_credit_note
    from disputes
    left join credits_after_opening
        on disputes.dispute_id = credits_after_opening.dispute_id
    left join invoices
        on disputes.invoice_id = invoices.invoice_id

)

select * from final
