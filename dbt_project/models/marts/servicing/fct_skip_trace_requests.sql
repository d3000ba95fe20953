-- The skip-trace queue: one row per request made on or before the as-of date, with why it was
-- made, where it stands now and what its result changed. A request is open until a result
-- arrives (found: at least one field group accepted; not_found: nothing usable) or it expires.
with

requests as (

    select * from {{ ref('stg_ops__skip_requests') }}
    where requested_on <= {{ as_of_date() }}

),

results as (

    select * from {{ ref('stg_ops__skip_results') }}

),

accepted as (

    select
        request_id,
        string_agg(distinct field_group, ', ' order by field_group) as fields_updated,
        max(confidence) as best_confidence
    from results
    where outcome = 'accepted'
    group by request_id

),

final as (

    select
        {{ as_of_date() }} as as_of_date,
        requests.request_id,
        requests.customer_id,
        requests.requested_on,
        array_to_string(requests.reasons, ', ') as reasons,
        len(requests.account_ids) as accounts,
        requests.max_days_past_due,
        requests.request_status,
        requests.request_status = 'open' as is_open,
        requests.answered_on,
        (coalesce(requests.answered_on, {{ as_of_date() }}) - requests.requested_on)::integer
            as age_days,
        accepted.fields_updated,
        accepted.best_confidence
    from requests
    left join accepted
        on requests.request_id = accepted.request_id

)

select * from final
