-- Every account's aging buckets add up to its total_open.
select
    account_id,
    total_open,
    current + dpd_1_30 + dpd_31_60 + dpd_61_90 + dpd_91_120 + dpd_121_150
    + dpd_151_180 + dpd_181_plus as bucket_sum
from {{ ref('fct_account_aging') }}
where
    current + dpd_1_30 + dpd_31_60 + dpd_61_90 + dpd_91_120 + dpd_121_150
    + dpd_151_180 + dpd_181_plus <> total_open
