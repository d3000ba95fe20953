with

source as (

    select * from {{ source('ops', 'agreement_installments') }}

),

renamed as (

    select
        -- ids
        agreement_id,
        installment_no,

        -- numbers
        amount as installment_amount,

        -- dates
        due_date

    from source

)

select * from renamed
