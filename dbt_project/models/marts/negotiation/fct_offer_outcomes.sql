-- What became of the offers made each month, per segment and kind, as of the as-of date
-- (fct_offers, so the two marts agree). An account offered a plan gets one offer per allowed
-- length and may be offered again when its balance changes, so the acceptance rate is per
-- account: accounts that took up an offer made in the month / accounts offered that month.
-- The kept rate is kept / (kept + broken) of the agreements that took up the month's offers,
-- the rule of the plans' kept rate; it is NULL while none has been kept or broken.
with

offers as (

    select
        offer_month,
        segment,
        offer_kind,
        account_id,
        is_accepted,
        is_expired,
        agreement_status
    from {{ ref('fct_offers') }}

),

outcomes as (

    select
        offer_month,
        segment,
        offer_kind,
        count(distinct account_id) as accounts_offered,
        count(*) as offers_made,
        count(distinct account_id) filter (where is_accepted) as accounts_accepted,
        count(*) filter (where is_accepted) as offers_accepted,
        count(*) filter (where agreement_status = 'kept') as offers_kept,
        count(*) filter (where agreement_status = 'broken') as offers_broken,
        count(*) filter (where agreement_status = 'active') as offers_active,
        count(*) filter (where agreement_status = 'cancelled') as offers_cancelled,
        count(*) filter (where not is_accepted and is_expired) as offers_lapsed
    from offers
    group by offer_month, segment, offer_kind

),

final as (

    select
        offer_month,
        segment,
        offer_kind,
        {{ as_of_date() }} as as_of_date,
        accounts_offered,
        offers_made,
        accounts_accepted,
        offers_accepted,
        offers_kept,
        offers_broken,
        offers_active,
        offers_cancelled,
        offers_lapsed,
        cast(accounts_accepted / nullif(accounts_offered, 0) as double) as acceptance_rate,
        cast(
            offers_kept / nullif(offers_kept + offers_broken, 0) as double
        ) as kept_rate
    from outcomes

)

select * from final
