{{ config(materialized='view') }}
-- Invoices issued on or before the as-of date: the only invoices an item can be linked to.
with

invoices as (

    select * from {{ ref('stg_billing__invoices') }}

),

final as (

    select
        invoice_id,
        account_id,
        invoice_number,
        amount,
        issue_date,
        due_date
    from invoices
    where issue_date <= {{ as_of_date() }}

)

select * from final
