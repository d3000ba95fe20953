-- dim_calendar: one row per day from 2015 to 2040 with the business-day count used by
-- escalation thresholds in business days (weekends and the `holiday_country` holidays off).
-- The holidays come from the seed `holidays`, written from the pinned `holidays` package
-- (dbt_project/scripts/holidays_seed.py; tests/test_calendar.py checks they agree).
with

days as (

    select
        cast(
            unnest(generate_series(date '2015-01-01', date '2040-12-31', interval 1 day)) as date
        ) as calendar_date

),

holidays as (

    select
        holiday_date,
        holiday_name
    from {{ ref('holidays') }}
    where holiday_country = '{{ var("holiday_country") }}'

),

flagged as (

    select
        days.calendar_date,
        isodow(days.calendar_date) >= 6 as is_weekend,
        holidays.holiday_name
    from days
    left join holidays
        on days.calendar_date = holidays.holiday_date

),

final as (

    select
        calendar_date,
        is_weekend,
        holiday_name,
        not is_weekend and holiday_name is null as is_business_day,
        cast(sum(case when not is_weekend and holiday_name is null then 1 else 0 end) over (
            order by calendar_date rows between unbounded preceding and current row
        ) as bigint) as business_day_index,
        '{{ var("holiday_country") }}' as holiday_country
    from flagged

)

select * from final
