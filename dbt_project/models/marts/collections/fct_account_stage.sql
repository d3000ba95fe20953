-- The escalation stage of each account on the run's as-of date: that day's slice of
-- fct_account_stage_history.
with

history as (

    select * from {{ ref('fct_account_stage_history') }}

),

final as (

    select * from history
    where as_of_date = {{ as_of_date() }}

)

-- the history's own columns, by design: this mart is one day of it
select * from final  -- noqa: AM04
