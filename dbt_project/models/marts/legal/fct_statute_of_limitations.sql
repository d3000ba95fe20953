-- The statute of limitations of each account's debt on the as-of date: the state whose period
-- applies, the day its clock started (the later of the last payment in effect and the oldest
-- unpaid collectible due date), the day it runs out, and whether the debt is time-barred.
-- The periods per state are recoup.yaml's legal.statute_years (dbt var statute_years, passed
-- by the flow with default_statute_years for the states not listed and non-US addresses).
with

balances as (

    select * from {{ ref('int_account_balances') }}
    where total_open > 0

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

-- billing and agency payments in effect on the as-of date: a reversed payment is not in
-- effect, so it never restarts the clock
payments as (

    select * from {{ ref('int_payments_in_effect') }}

),

statutes as (

    select
        upper(trim(entry.key)) as state,
        entry.value::integer as statute_years
    from json_each(
        '{{ tojson(var("statute_years", {})) | replace("'", "''") }}'
    ) as entry

),

last_payments as (

    select
        account_id,
        max(received_date) as last_payment_date
    from payments
    group by account_id

),

-- the customer's state on billing's address and on the address in use (a skip-traced
-- address may be in another state); a non-US address has no state statute here
customer_states as (

    select
        customer_id,
        case
            when upper(trim(billing_country)) = 'US' then upper(trim(billing_state))
        end as billing_state,
        case
            when upper(trim(country)) = 'US' then upper(trim(state))
        end as current_state
    from customers

),

-- the shorter period of the two states applies: a referral never rests on the longer one
customer_statutes as (

    select
        customer_states.customer_id,
        customer_states.billing_state,
        customer_states.current_state,
        coalesce(billing_statute.statute_years, {{ var('default_statute_years', 3) | int }})
            as billing_years,
        coalesce(current_statute.statute_years, {{ var('default_statute_years', 3) | int }})
            as current_years
    from customer_states
    left join statutes as billing_statute
        on customer_states.billing_state = billing_statute.state
    left join statutes as current_statute
        on customer_states.current_state = current_statute.state

),

clocks as (

    select
        balances.account_id,
        accounts.customer_id,
        accounts.currency,
        balances.total_open,
        balances.collectible_amount,
        last_payments.last_payment_date,
        balances.oldest_collectible_due_date,
        customer_statutes.billing_state,
        case
            when customer_statutes.current_years < customer_statutes.billing_years
                then customer_statutes.current_state
            else customer_statutes.billing_state
        end as statute_state,
        coalesce(
            least(customer_statutes.billing_years, customer_statutes.current_years),
            {{ var('default_statute_years', 3) | int }}
        ) as statute_years,
        -- greatest ignores a missing date: no payment, or nothing collectible open
        greatest(last_payments.last_payment_date, balances.oldest_collectible_due_date)
            as clock_started_on
    from balances
    inner join accounts
        on balances.account_id = accounts.account_id
    left join customer_statutes
        on accounts.customer_id = customer_statutes.customer_id
    left join last_payments
        on balances.account_id = last_payments.account_id

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        account_id,
        customer_id,
        currency,
        total_open,
        collectible_amount,
        billing_state,
        statute_state,
        statute_years,
        last_payment_date,
        oldest_collectible_due_date,
        clock_started_on,
        -- calendar years: a clock started on Feb 29 runs out on Feb 28 of a common year
        (clock_started_on + to_years(statute_years))::date as sol_expires_on,
        coalesce(
            {{ as_of_date() }} >= (clock_started_on + to_years(statute_years))::date,
            false
        ) as is_time_barred
    from clocks

)

select * from final
