-- A held account never moves up the ladder: its stage is the one it had on the previous run.
with

history as (

    select * from {{ ref('fct_account_stage_history') }}

),

with_previous as (

    select
        account_id,
        as_of_date,
        is_held,
        stage_order,
        lag(stage_order) over (partition by account_id order by as_of_date) as previous_order
    from history

)

select * from with_previous
where is_held and stage_order > coalesce(previous_order, 0)
