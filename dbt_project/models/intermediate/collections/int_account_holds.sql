-- Why an account must not be escalated or contacted on the as-of date: one row per account
-- with at least one hold (flags, plans, manual holds from seeds/manual_holds.csv, a dispute
-- covering the whole balance, an open placement with a collection agency), the reasons
-- sorted. Flags that only change how a customer may be contacted (do_not_email, do_not_call,
-- servicemember) are restrictions, not holds, and listed apart.
with

flags as (

    select * from {{ ref('int_active_flags') }}

),

plans as (

    select * from {{ ref('int_payment_plans') }}
    where plan_status = 'active'

),

balances as (

    select * from {{ ref('int_account_balances') }}

),

-- placements open on the as-of date: placed by then, not recalled by then (a recall closes
-- the placement on its recalled_date)
placements as (

    select account_id
    from {{ ref('stg_ops__placements') }}
    where
        placed_date <= {{ as_of_date() }}
        and (recalled_date is null or recalled_date > {{ as_of_date() }})

),

reasons as (

    select
        account_id,
        flag as hold_reason
    from flags
    where
        flag in (
            'bankruptcy', 'deceased', 'cease_communication', 'attorney_represented',
            'legal_hold', 'fraud'
        )

    union all

    select
        account_id,
        plan_kind as hold_reason
    from plans

    union all

    -- a settlement paid in full settles the account for good (issue 13): no more escalation
    -- or contact; billing posts the write-off recoup recommends (flows/lib/settlements.py)
    select
        account_id,
        'settled' as hold_reason
    from {{ ref('int_payment_plans') }}
    where plan_kind = 'settlement' and plan_status = 'kept'

    union all

    select
        manual_holds.account_id,
        'manual: ' || manual_holds.reason as hold_reason
    from {{ ref('manual_holds') }} as manual_holds
    where
        manual_holds.start_date <= {{ as_of_date() }}
        and (manual_holds.end_date is null or manual_holds.end_date > {{ as_of_date() }})

    union all

    -- a dispute holds only the disputed amount; the account is held when nothing else is owed
    select
        account_id,
        'dispute' as hold_reason
    from balances
    where disputed_amount > 0 and collectible_amount = 0

    union all

    -- internal dunning stops while an agency collects the account (issue 7): the stage
    -- freezes like any hold's, and nothing is sent
    select
        account_id,
        'placed_with_agency' as hold_reason
    from placements

    union all

    -- the company's attorneys have the account (issue 13): internal dunning stops while the
    -- referral is open on the as-of date (referred by then, not withdrawn by then)
    select
        account_id,
        'referred_to_legal' as hold_reason
    from {{ ref('stg_ops__legal_referrals') }}
    where
        referred_on <= {{ as_of_date() }}
        and (withdrawn_on is null or withdrawn_on > {{ as_of_date() }})

),

restrictions as (

    select
        account_id,
        list(distinct flag order by flag) as contact_restrictions
    from flags
    where flag in ('do_not_email', 'do_not_call', 'servicemember')
    group by account_id

),

held as (

    select
        account_id,
        list(distinct hold_reason order by hold_reason) as hold_reasons
    from reasons
    group by account_id

),

final as (

    select
        coalesce(held.account_id, restrictions.account_id) as account_id,
        coalesce(held.hold_reasons, []) as hold_reasons,
        coalesce(restrictions.contact_restrictions, []) as contact_restrictions
    from held
    full outer join restrictions
        on held.account_id = restrictions.account_id

)

select * from final
