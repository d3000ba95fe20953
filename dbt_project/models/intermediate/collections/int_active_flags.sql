-- Account flags in force on the as-of date, one row per account and flag. A flag without an
-- account_id covers every account of its customer. A flag counts from its start_date up to
-- (not including) its end_date, like a dispute up to its resolved_date.
with

flags as (

    select * from {{ ref('stg_billing__account_flags') }}
    where
        start_date <= {{ as_of_date() }}
        and (end_date is null or end_date > {{ as_of_date() }})

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

final as (

    select distinct
        accounts.account_id,
        flags.flag
    from flags
    inner join accounts
        on
            flags.customer_id = accounts.customer_id
            and (flags.account_id is null or flags.account_id = accounts.account_id)

)

select * from final
