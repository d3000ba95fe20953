-- Disputes open on the as-of date: opened by then and not yet resolved. A dispute stops
-- counting on its resolved_date (whatever the resolution: a rejected dispute's amount becomes
-- collectible again; an upheld one is settled by a credit note).
with

disputes as (

    select * from {{ ref('stg_billing__disputes') }}

),

final as (

    select
        dispute_id,
        account_id,
        invoice_id,
        disputed_amount,
        opened_date
    from disputes
    where
        opened_date <= {{ as_of_date() }}
        and (resolved_date is null or resolved_date > {{ as_of_date() }})

)

select * from final
