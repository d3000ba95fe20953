with

disputes as (

    select * from {{ ref('stg_billing__disputes') }}
    where opened_date <= {{ as_of_date() }}

),

credit_notes as (

    select
        invoice_id,
        sum(amount) as credited_amount
    from {{ ref('stg_billing__adjustments') }}
    where
        adjustment_kind = 'credit_note'
        and effective_date <= {{ as_of_date() }}
        and invoice_id is not null
    group by invoice_id

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
        -- an upheld dispute should be settled by a credit note on its invoice; without one
        -- it belongs in the discrepancy queue
        disputes.resolution = 'upheld'
        and disputes.resolved_date <= {{ as_of_date() }}
        and coalesce(credit_notes.credited_amount, 0) = 0 as upheld_without_credit_note
    from disputes
    left join credit_notes
        on disputes.invoice_id = credit_notes.invoice_id

)

select * from final
