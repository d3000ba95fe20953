with

source as (

    select * from {{ source('ops', 'skip_results') }}

),

renamed as (

    select
        -- ids
        import_id,
        request_id,
        customer_id,
        override_id,

        -- strings
        field_group,
        outcome,
        source as result_source,

        -- numbers
        line_number,
        confidence,

        -- timestamps
        decided_at

    from source

)

select * from renamed
