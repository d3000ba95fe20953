-- One row per account per as_of_date: the escalation stage decided by that day's run.
-- Incremental: a run deletes its own as_of_date and appends it again (a rerun replaces the
-- whole day, even when it now has fewer accounts), so replaying a past date never touches
-- other days. The previous stage comes from the latest earlier run.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        pre_hook="{{ replace_as_of_date_hook() }}",
    )
}}

with

balances as (

    select * from {{ ref('int_account_balances') }}

),

accounts as (

    select * from {{ ref('stg_billing__accounts') }}

),

holds as (

    select * from {{ ref('int_account_holds') }}

),

calendar as (

    select * from {{ ref('dim_calendar') }}

),

policy as (

    select * from {{ ref('escalation_policy') }}
    where policy_version = '{{ var("policy_version") }}'

),

min_balances as (

    select * from {{ ref('escalation_min_balance') }}
    where policy_version = '{{ var("policy_version") }}'

),

previous_run as (

    {% if is_incremental() %}
        select
            history.account_id,
            history.stage_order as previous_order,
            history.stage as previous_stage,
            history.stage_entered_date as previous_entered_date
        from {{ this }} as history
        where history.as_of_date = (
            select max(earlier.as_of_date) from {{ this }} as earlier
            where earlier.as_of_date < {{ as_of_date() }}
        )
    {% else %}
        select
            null::varchar as account_id,
            null::integer as previous_order,
            null::varchar as previous_stage,
            null::date as previous_entered_date
        where false
    {% endif %}

),

-- each account follows its segment's ladder, or the default ladder
ladder_segment as (

    select
        accounts.account_id,
        case
            when accounts.segment in (select policy.segment from policy)
                then accounts.segment
            else 'default'
        end as policy_segment
    from accounts

),

escalation_days as (

    select
        balances.*,
        accounts.customer_id,
        accounts.segment,
        accounts.currency,
        ladder_segment.policy_segment,
        {{ as_of_date() }} - balances.oldest_collectible_due_date as calendar_days,
        as_of_day.business_day_index - due_day.business_day_index as business_days
    from balances
    inner join accounts
        on balances.account_id = accounts.account_id
    inner join ladder_segment
        on balances.account_id = ladder_segment.account_id
    left join calendar as due_day
        on balances.oldest_collectible_due_date = due_day.calendar_date
    left join calendar as as_of_day
        on as_of_day.calendar_date = {{ as_of_date() }}

),

matching as (

    select
        escalation_days.account_id,
        max(policy.stage_order) as highest_order
    from escalation_days
    inner join policy
        on escalation_days.policy_segment = policy.segment
    left join min_balances
        on
            escalation_days.policy_segment = min_balances.segment
            and escalation_days.currency = min_balances.currency
    where
        escalation_days.oldest_collectible_due_date is not null
        and escalation_days.collectible_amount >= coalesce(min_balances.min_collectible, 0)
        and (
            case
                when policy.day_basis = 'business' then escalation_days.business_days
                else escalation_days.calendar_days
            end
        ) >= policy.days_past_due
    group by escalation_days.account_id

),

decided as (

    select
        escalation_days.*,
        coalesce(matching.highest_order, 0) as highest_order,
        coalesce(previous_run.previous_order, 0) as previous_order,
        previous_run.previous_stage,
        previous_run.previous_entered_date,
        coalesce(holds.hold_reasons, []) as hold_reasons,
        coalesce(holds.contact_restrictions, []) as contact_restrictions,
        len(coalesce(holds.hold_reasons, [])) > 0 as is_held
    from escalation_days
    left join matching
        on escalation_days.account_id = matching.account_id
    left join previous_run
        on escalation_days.account_id = previous_run.account_id
    left join holds
        on escalation_days.account_id = holds.account_id

),

-- the first stage above the previous one that may not be skipped
first_step_above as (

    select
        decided.account_id,
        min(policy.stage_order) as step_order
    from decided
    inner join policy
        on
            decided.policy_segment = policy.segment
            and decided.previous_order < policy.stage_order
            and policy.catch_up = 'step'
    group by decided.account_id

),

targeted as (

    select
        decided.*,
        least(
            decided.highest_order,
            coalesce(first_step_above.step_order, decided.highest_order)
        ) as target_order
    from decided
    left join first_step_above
        on decided.account_id = first_step_above.account_id

),

staged as (

    select
        targeted.*,
        case
            -- a hold stops escalation: the account keeps the stage it had
            when targeted.is_held then targeted.previous_order
            -- facts moved the account down (a payment, a credit): follow them at once
            when targeted.highest_order <= targeted.previous_order then targeted.highest_order
            -- up, after the minimum stay in the stage before (days since the last contact)
            when
                targeted.previous_entered_date is null
                or {{ as_of_date() }} - targeted.previous_entered_date
                >= target_step.min_days_in_previous_stage
                then targeted.target_order
            else targeted.previous_order
        end as stage_order
    from targeted
    left join policy as target_step
        on
            targeted.policy_segment = target_step.segment
            and targeted.target_order = target_step.stage_order

),

named as (

    select
        staged.*,
        coalesce(current_step.stage, 'none') as stage,
        current_step.channel as stage_channel,
        current_step.template as stage_template,
        following.stage as next_stage,
        following.channel as next_channel,
        following.days_past_due as next_threshold,
        following.day_basis as next_day_basis,
        following.min_days_in_previous_stage as next_stage_min_days,
        case
            when staged.stage_order = staged.previous_order
                then coalesce(staged.previous_entered_date, {{ as_of_date() }})
            else {{ as_of_date() }}
        end as stage_entered_date
    from staged
    left join policy as current_step
        on
            staged.policy_segment = current_step.segment
            and staged.stage_order = current_step.stage_order
    left join policy as following
        on
            staged.policy_segment = following.segment
            and staged.stage_order + 1 = following.stage_order

),

next_due as (

    select
        named.*,
        case
            when named.is_held or named.next_stage is null then null
            else greatest(
                case
                    when named.next_day_basis = 'business'
                        then threshold_day.calendar_date
                    else named.oldest_collectible_due_date + named.next_threshold
                end,
                named.stage_entered_date + named.next_stage_min_days
            )
        end as next_action_due_date
    from named
    left join calendar as due_day
        on named.oldest_collectible_due_date = due_day.calendar_date
    left join calendar as threshold_day
        on
            threshold_day.business_day_index = due_day.business_day_index + named.next_threshold
            and threshold_day.is_business_day

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        account_id,
        customer_id,
        segment,
        currency,
        '{{ var("policy_version") }}' as policy_version,
        policy_segment,
        stage_order,
        stage,
        previous_stage,
        stage_entered_date,
        {{ as_of_date() }} - stage_entered_date as days_in_stage,
        stage_channel,
        stage_template,
        is_held,
        array_to_string(hold_reasons, ', ') as hold_reason,
        array_to_string(contact_restrictions, ', ') as contact_restrictions,
        calendar_days as days_past_oldest_collectible_due,
        business_days as business_days_past_oldest_collectible_due,
        highest_order as highest_matching_stage_order,
        next_stage,
        next_channel,
        next_action_due_date,
        total_open,
        disputed_amount,
        collectible_amount,
        credit_balance,
        max_days_past_due,
        case
            when total_open = 0 then 'no_balance'
            else {{ aging_bucket('max_days_past_due') }}
        end as delinquency_bucket
    from next_due

)

select * from final
