"""recoup settings: `recoup.yaml`, then `RECOUP_*` environment overrides, then validation.

This module is the only place that reads the environment. Everything else receives a frozen
`Settings`. Rules:

- The file is found at `$RECOUP_CONFIG`, else `$RECOUP_HOME/recoup.yaml`, else the built-in
  defaults are used (they work on a fresh machine).
- A nested key is overridden by `RECOUP_<SECTION>__<KEY>`, like
  `RECOUP_INGEST__LOCK_WAIT_SECONDS=5`.
- An unknown key, in the file or the environment, fails with its name and the allowed names.
- Secrets (the SendGrid API key, the PII encryption keys) come from the environment only; a
  secret in the file fails.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import typing
import zoneinfo
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_FILE_NAME = "recoup.yaml"
ENV_PREFIX = "RECOUP_"
# Environment variables that are not settings inside recoup.yaml (RECOUP_FAULT_KILL_AT is the
# test-only fault injection of flows/lib/faults.py).
ENV_NOT_SETTINGS = {"RECOUP_HOME", "RECOUP_CONFIG", "RECOUP_FAULT_KILL_AT"}
# the PII encryption keys (flows/lib/pii.py): secrets, read here and never from the file
ENV_NOT_SETTINGS |= {"RECOUP_PII_KEY", "RECOUP_PII_PREVIOUS_KEYS"}
# what a dbt build sets for dbt's profile and macros while it runs (flows/lib/dbt_build.py)
ENV_NOT_SETTINGS |= {"RECOUP_WAREHOUSE_PATH", "RECOUP_AS_OF_DATE"}
ENV_NOT_SETTINGS |= {"RECOUP_DUCKDB_MEMORY_LIMIT", "RECOUP_DUCKDB_TEMP_DIRECTORY"}
SECRET_ENV_VARS = ("SENDGRID_API_KEY", "RECOUP_PII_KEY", "RECOUP_PII_PREVIOUS_KEYS")
DEFAULT_SENDGRID_API_HOST = "https://api.sendgrid.com"
ENV_ONLY_FIELDS = (
    "home", "sendgrid_api_key", "sendgrid_api_host", "pii_key", "pii_previous_keys",
)  # fmt: skip
PII_KEY_BYTES = 32  # AES-256


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompanySettings(_Section):
    """Who the customer hears from: the identity every email and letter carries."""

    name: str = Field("Acme Utilities", description="Name customers know you by.")
    timezone: str = Field(
        "America/Chicago",
        description="IANA time zone of the company: the default as-of date and the cron run here.",
    )
    address_line1: str = "100 Commerce Street"
    address_line2: str | None = "Suite 400"
    city: str = "Chicago"
    state: str = "IL"
    postal_code: str = "60601"
    country: str = Field("US", pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2.")
    phone: str = "+1 312 555 0100"
    email: str = Field("billing@acme-utilities.example", description="Where customers write.")
    website: str = "https://acme-utilities.example"
    creditor_name: str | None = Field(
        None,
        description="Third-party mode: the creditor the debts are owed to (validation notice); "
        "null means company.name.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"{value!r} is not an IANA time zone; use one like America/Chicago")
        return value


class PathSettings(_Section):
    """Folders and files, relative to RECOUP_HOME unless absolute."""

    warehouse: str = "warehouse/recoup.duckdb"
    out: str = "out"
    outbox: str = "outbox"
    inbox: str = "inbox"
    state: str = "state"


class DuckDBSettings(_Section):
    """What DuckDB may use, in recoup's own connection and in dbt's (one at a time)."""

    memory_limit: str = Field(
        "3GB",
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory_limit for each connection to the warehouse. Past it, "
        "joins, sorts and aggregates spill to the temporary folder; without a limit DuckDB "
        "takes up to 80 % of the machine's memory.",
    )
    temp_directory: str = Field(
        "state/duckdb_tmp",
        description="Where DuckDB spills past memory_limit, relative to RECOUP_HOME unless "
        "absolute (DuckDB removes its files when the connection closes).",
    )


class IngestSettings(_Section):
    lock_wait_seconds: int = Field(
        30,
        ge=0,
        le=3600,
        description="How long a second ingest or run waits for the running one before refusing.",
    )


class GateSettings(_Section):
    freshness_days: int = Field(
        7, ge=0, le=366, description="Gate 1 fails when the newest payment is older than this."
    )
    dbt_data_tests: bool = Field(
        True,
        description="dbt's data tests (unique keys, relationships, accepted values) run with "
        "every build, and a failure stops the run before gate 2; false leaves the marts to "
        "gate 2 alone (a third less dbt time).",
    )
    volume_factor: float = Field(
        3.0, gt=1, le=100, description="A channel's planned contacts above this x median halt."
    )
    volume_min_actions: int = Field(
        50, ge=0, description="Spikes smaller than this many contacts never halt a run."
    )
    volume_trailing_runs: int = Field(7, ge=3, le=90, description="Runs in the median.")


class ContactSettings(_Section):
    """What every contact carries, and the guardrails that decide whether and when it goes."""

    default_language: Literal["en", "es"] = Field(
        "en", description="Templates for customers whose language has none (en and es exist)."
    )
    pay_link: str = Field(
        "https://pay.acme-utilities.example/accounts/{account_id}",
        description="Payment page; {account_id} is replaced.",
    )
    opt_out_link: str = Field(
        "https://collections.acme-utilities.example/opt-out?ref={outbox_id}",
        description="Email opt-out page: where `recoup events serve` answers /opt-out; "
        "{outbox_id} (an opaque key, no PII) is replaced.",
    )
    pay_within_days: int = Field(
        14, ge=1, le=60, description="Reminders past due ask for payment within this many days."
    )
    window_start_hour: int = Field(
        8,
        ge=8,
        le=20,
        description="Earliest local hour a contact may be sent; Reg F 1006.6(b) allows 8.",
    )
    window_end_hour: int = Field(
        21,
        ge=9,
        le=21,
        description="Contacts are sent before this local hour; Reg F 1006.6(b) allows 21.",
    )
    window_margin_minutes: int = Field(
        60, ge=0, le=180, description="Kept clear inside both ends of the window for queueing."
    )
    catch_up_days: int = Field(
        7,
        ge=0,
        le=60,
        description="A contact deferred, cancelled or failed is planned again on later runs "
        "while the account has been in its stage at most this many days.",
    )
    min_days_between_contacts: int = Field(
        2, ge=0, le=30, description="Days after any contact before the next one to a customer."
    )
    max_emails_per_7_days: int = Field(3, ge=0, le=50, description="Per account, rolling.")
    max_letters_per_7_days: int = Field(2, ge=0, le=50, description="Per account, rolling.")
    max_calls_per_7_days: int = Field(
        7, ge=0, le=7, description="Phone-queue entries per account, rolling (Reg F: 7 in 7)."
    )
    work_email_domains: list[str] = Field(
        default_factory=list,
        description="Domains known to be employers': consumers' addresses there are never emailed.",
    )

    @field_validator("pay_link", "opt_out_link")
    @classmethod
    def _known_placeholders(cls, value: str, info: Any) -> str:
        allowed = {"pay_link": "{account_id}", "opt_out_link": "{outbox_id}"}[info.field_name]
        for placeholder in re.findall(r"\{[^}]*\}", value):
            if placeholder != allowed:
                raise ValueError(f"the only placeholder allowed is {allowed}, not {placeholder}")
        return value

    @model_validator(mode="after")
    def _window_has_room(self) -> ContactSettings:
        room = (self.window_end_hour - self.window_start_hour) * 60 - 2 * self.window_margin_minutes
        if room < 60:
            raise ValueError(
                f"the send window {self.window_start_hour}:00-{self.window_end_hour}:00 with "
                f"{self.window_margin_minutes} minutes of margin at each end leaves under an hour"
            )
        return self


class EmailSettings(_Section):
    """Sending email: the sender identity and how recoup talks to SendGrid."""

    from_address: str = Field(
        "billing@acme-utilities.example", description="A verified SendGrid sender."
    )
    from_name: str | None = Field(
        None,
        description="Defaults to company.name: a first-party creditor sends under its own name.",
    )
    reply_to: str | None = None
    batch_size: int = Field(
        100, ge=1, le=1000, description="Messages (personalizations) per SendGrid request."
    )
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="Per request.")
    max_attempts: int = Field(
        4, ge=1, le=10, description="Tries per request on 429, 5xx and refused connections."
    )
    backoff_seconds: float = Field(
        2.0, ge=0, le=60, description="First wait after a 5xx; doubles each try."
    )
    max_rate_limit_wait_seconds: float = Field(
        120.0, ge=0, le=3600, description="Longest wait for X-RateLimit-Reset after a 429."
    )
    sandbox_mode: bool = Field(
        False, description="SendGrid validates and sends nothing (answers 200)."
    )
    unsubscribe_group_id: int | None = Field(
        None, ge=1, description="SendGrid unsubscribe (ASM) group for collection notices."
    )
    event_public_key: str | None = Field(
        None, description="Base64 key of the signed Event Webhook; events are refused without it."
    )
    event_max_age_seconds: int = Field(
        86_400, ge=60, le=7 * 86_400, description="Oldest signed timestamp accepted (replays)."
    )
    event_max_body_bytes: int = Field(
        5_000_000, ge=1_000, le=50_000_000, description="Largest Event Webhook post accepted."
    )


class WorkQueueSettings(_Section):
    """The phone and manager work queues: who owns an item and by when."""

    phone_owners: list[str] = Field(
        default_factory=lambda: ["collections-team"],
        min_length=1,
        description="Collectors; calls are shared among them by account.",
    )
    manager_owner: str = "collections-manager"
    due_business_days: int = Field(2, ge=0, le=30, description="From the day an item is queued.")


class CommissionTier(_Section):
    """A commission rate for accounts placed at least this many days past due."""

    min_days_past_due: int = Field(ge=0)
    rate: Decimal = Field(ge=0, le=1, description="Share of what is collected, e.g. 0.30.")


class AgencySettings(_Section):
    """One collection agency: who it is, what it takes, and what it is paid."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$", description="Short id, in file names.")
    name: str
    layout_version: Literal["1"] = Field("1", description="Placement file layout (docs).")
    commission_rate: Decimal = Field(ge=0, le=1, description="Share of what is collected.")
    commission_tiers: list[CommissionTier] = Field(
        default_factory=list,
        description="Rates by days past due at placement (the highest tier reached applies).",
    )
    segments: list[str] = Field(default_factory=list, description="Empty: every segment.")
    currencies: list[str] = Field(default_factory=list, description="Empty: every currency.")
    states: list[str] = Field(
        default_factory=list, description="States or regions it is licensed in; empty: all."
    )
    min_balance: Decimal = Field(Decimal("0"), ge=0, description="Smallest collectible placed.")
    max_placement_days: int = Field(
        180, ge=1, le=3650, description="An account still placed after this is recalled."
    )
    recall_contact: str = Field(description="Where recall questions go (email).")
    share: int = Field(1, ge=0, le=100, description="Weight of its share of new placements.")

    def rate_for(self, days_past_due: int) -> Decimal:
        """The commission rate for an account placed this many days past due."""
        reached = [
            tier for tier in self.commission_tiers if tier.min_days_past_due <= days_past_due
        ]
        return (
            max(reached, key=lambda tier: tier.min_days_past_due).rate
            if reached
            else (self.commission_rate)
        )


def _demo_agencies() -> list[AgencySettings]:
    return [
        AgencySettings(
            id="northwind",
            name="Northwind Recovery Services",
            commission_rate=Decimal("0.25"),
            commission_tiers=[CommissionTier(min_days_past_due=180, rate=Decimal("0.35"))],
            currencies=["USD"],
            min_balance=Decimal("50.00"),
            recall_contact="recalls@northwind-recovery.example",
            share=2,
        ),
        AgencySettings(
            id="summit",
            name="Summit Collections",
            commission_rate=Decimal("0.28"),
            currencies=["USD", "CAD"],
            min_balance=Decimal("25.00"),
            recall_contact="placements@summit-collections.example",
            share=1,
        ),
    ]


class AgencyPlacementSettings(_Section):
    """Handing accounts to collection agencies (the agency_placement stage)."""

    split: Literal["share", "round_robin"] = Field(
        "share",
        description="share: each agency gets new placements by its share (champion/challenger); "
        "round_robin: in turn. Either way the same account always goes to the same agency.",
    )
    agencies: list[AgencySettings] = Field(default_factory=_demo_agencies)

    @model_validator(mode="after")
    def _unique_ids(self) -> AgencyPlacementSettings:
        ids = [agency.id for agency in self.agencies]
        if len(ids) != len(set(ids)):
            raise ValueError(f"agency ids must be unique; got {', '.join(ids)}")
        return self


class SegmentReporting(_Section):
    """How one segment's accounts are reported (first party)."""

    portfolio_type: Literal["O", "R", "C"] = "O"
    account_type: str = Field(pattern=r"^[0-9A-Z]{2}$")


class BureauSettings(_Section):
    """The monthly Metro 2 file for the credit bureaus (`recoup bureau`, docs/credit-bureau.md).
    The ids come from each bureau at onboarding; the demo values are placeholders."""

    identification_number: str = Field(
        "ACMEUTIL01",
        pattern=r"^[A-Z0-9]{5,20}$",
        description="Your furnisher id for the office that verifies the data (base 21-40): "
        "5-20 upper-case letters or digits, stable month to month. Changing it sends an L1.",
    )
    reporter_name: str | None = Field(None, description="Header reporter name; null: company.name.")
    reporter_address: str | None = Field(
        None, description="Header reporter address; null: the company address in one line."
    )
    reporter_telephone: str | None = Field(None, description="10 digits; null: company.phone.")
    equifax_program_identifier: str = Field("", max_length=10)
    experian_program_identifier: str = Field("", max_length=5)
    transunion_program_identifier: str = Field("", max_length=10)
    innovis_program_identifier: str = Field("", max_length=10)
    program_date: dt.date = Field(
        dt.date(2026, 1, 1), description="When your Metro 2 reporting program was set up."
    )
    program_revision_date: dt.date | None = Field(None, description="Its last revision.")
    portfolio_type: Literal["O", "R", "C"] = Field(
        "O",
        description="First party: O open account (due in full each bill), R revolving, C line "
        "of credit (R and C report the account's credit_limit).",
    )
    account_type: str = Field(
        "92",
        pattern=r"^[0-9A-Z]{2}$",
        description="First party: Metro 2 account type (92 utility, 4D telecom, 90 medical, "
        "01 unsecured ...). Third party always reports 48 (collection agency).",
    )
    segments: dict[str, SegmentReporting] = Field(
        default_factory=lambda: {"healthcare": SegmentReporting(account_type="90")},
        description="First party: portfolio and account type per segment, for the segments "
        "that differ from portfolio_type/account_type (90: medical debt).",
    )
    creditor_classification: int = Field(
        10, ge=1, le=15, description="Third party, K1: the original creditor's kind (10 utility)."
    )
    furnish_wait_days: int = Field(
        14,
        ge=14,
        le=90,
        description="Third party: days after the first letter or email before an account may "
        "be reported (Reg F 1006.30(a)), with no bounce in between.",
    )


class ServicingSettings(_Section):
    """Account servicing between billing and collections: refunds and payment discrepancies
    (`out/servicing/<date>/`, docs/servicing.md)."""

    refund_hold_days: int = Field(
        30,
        ge=0,
        le=365,
        description="Days a credit balance waits, with no new activity on the account, before "
        "it is queued for a refund.",
    )
    discrepancy_owner: str = Field(
        "billing-ops", min_length=1, description="Who works the payment discrepancy queue."
    )

    def dbt_vars(self) -> dict[str, object]:
        """The settings the marts read, as dbt vars."""
        return {
            "refund_hold_days": self.refund_hold_days,
            "discrepancy_owner": self.discrepancy_owner,
        }


class SkipTracingSettings(_Section):
    """Skip tracing: finding customers whose contact details went stale
    (`out/skip_tracing/<date>/`, docs/skip-tracing.md)."""

    min_confidence: int = Field(
        70,
        ge=0,
        le=100,
        description="A skip-trace result is applied when the vendor's confidence (0-100) is at "
        "least this; a lower one is recorded and not used.",
    )
    result_wait_days: int = Field(
        30,
        ge=1,
        le=365,
        description="Days a request waits for its result; then it expires and the customer may "
        "be requested again.",
    )
    resubmit_after_days: int = Field(
        90,
        ge=1,
        le=730,
        description="Days after a request before the same customer is requested again when "
        "the result found nothing usable.",
    )
    vendor: str = Field(
        "skip-trace-vendor", min_length=1, description="Who receives the request files."
    )
    use_found_emails: bool | None = Field(
        None,
        description="Whether an email address a skip-trace vendor found is used. Empty: yes "
        "for a first-party creditor, no for a third-party collector (an address from a vendor "
        "is outside Reg F's email safe harbor, 1006.6(d)(4)).",
    )


class PlanOfferPolicy(_Section):
    """Who may be offered an installment plan, and on what terms."""

    min_balance: Decimal = Field(
        Decimal("100.00"), ge=0, description="Smallest collectible balance offered a plan."
    )
    max_balance: Decimal = Field(
        Decimal("10000.00"), gt=0, description="Largest collectible balance offered a plan."
    )
    min_days_past_due: int = Field(15, ge=0, description="Offered from this many days past due.")
    max_days_past_due: int = Field(365, ge=0, description="... and up to this many.")
    no_broken_plan_months: int = Field(
        12, ge=0, le=120, description="No plan offered when one broke in the last N months."
    )
    lengths: list[int] = Field(
        default_factory=lambda: [3, 6, 12],
        min_length=1,
        description="Allowed plan lengths, in monthly installments.",
    )
    min_installment: Decimal = Field(
        Decimal("25.00"), gt=0, description="No installment smaller than this."
    )

    @model_validator(mode="after")
    def _ranges(self) -> PlanOfferPolicy:
        if self.min_balance > self.max_balance:
            raise ValueError("min_balance must not be above max_balance")
        if self.min_days_past_due > self.max_days_past_due:
            raise ValueError("min_days_past_due must not be above max_days_past_due")
        if any(length < 2 or length > 60 for length in self.lengths):
            raise ValueError("plan lengths are 2 to 60 monthly installments")
        return self


class SettlementTier(_Section):
    min_days_past_due: int = Field(ge=0)
    percent: Decimal = Field(gt=0, le=100, description="Share of the collectible balance asked.")


def _settlement_tiers() -> list[SettlementTier]:
    return [
        SettlementTier(min_days_past_due=60, percent=Decimal("90")),
        SettlementTier(min_days_past_due=120, percent=Decimal("80")),
        SettlementTier(min_days_past_due=180, percent=Decimal("70")),
    ]


class SettlementOfferPolicy(_Section):
    """Settlement offers: a share of the collectible balance by age, valid for a while."""

    tiers: list[SettlementTier] = Field(
        default_factory=_settlement_tiers,
        min_length=1,
        description="Percent of the balance asked, by days past due (the highest tier met).",
    )
    min_balance: Decimal = Field(
        Decimal("50.00"), ge=0, description="Smallest collectible balance offered a settlement."
    )
    valid_days: int = Field(30, ge=1, le=365, description="An offer expires this many days on.")
    approval_above: Decimal = Field(
        Decimal("1000.00"),
        ge=0,
        description="A settlement that forgives more than this needs a recorded approver.",
    )


class OfferPolicy(_Section):
    """A segment's offer policy (negotiation.offers.<segment>)."""

    stages: list[str] = Field(
        default_factory=lambda: ["reminder_2", "final_notice", "manager_review", "pre_placement"],
        description="Stages whose reminders and phone-queue entries carry the offers.",
    )
    plan: PlanOfferPolicy | None = Field(
        default_factory=PlanOfferPolicy, description="null: no plan offers in this segment."
    )
    settlement: SettlementOfferPolicy | None = Field(
        default_factory=SettlementOfferPolicy,
        description="null: no settlement offers in this segment.",
    )


def _default_offers() -> dict[str, OfferPolicy]:
    return {
        "default": OfferPolicy(),
        "enterprise": OfferPolicy(
            plan=PlanOfferPolicy(
                min_balance=Decimal("1000.00"),
                max_balance=Decimal("250000.00"),
                lengths=[3, 6],
                min_installment=Decimal("500.00"),
            ),
            settlement=None,
        ),
    }


class NegotiationSettings(_Section):
    """Plan and settlement offers, recorded agreements and plan servicing (docs/negotiation.md)."""

    offers: dict[str, OfferPolicy] = Field(
        default_factory=_default_offers,
        description="Offer policy per segment; `default` covers the segments not listed.",
    )
    plan_grace_days: int = Field(
        5, ge=0, le=60, description="An installment unpaid this long after its due date breaks "
        "the plan; the ladder resumes from the stage the account had reached.",
    )  # fmt: skip
    installment_reminder_days: int = Field(
        3, ge=0, le=30, description="Days before each installment's due date its reminder "
        "goes out (0: no reminders).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _has_default(self) -> NegotiationSettings:
        if "default" not in self.offers:
            raise ValueError("offers needs a `default` policy for the segments not listed")
        return self

    def policy_for(self, segment: str | None) -> OfferPolicy:
        return self.offers.get(segment or "default", self.offers["default"])

    def dbt_vars(self) -> dict[str, object]:
        return {"plan_grace_days": self.plan_grace_days}


def _statute_years() -> dict[str, int]:
    # limitation periods for open-account debt, in years, by state. Verify with counsel
    # before use: they vary by debt type, and tolling and revival rules differ.
    return {
        "AK": 3, "AL": 3, "AR": 3, "AZ": 3, "CA": 4, "CO": 6, "CT": 6, "DC": 3, "DE": 3,
        "FL": 4, "GA": 4, "HI": 6, "IA": 5, "ID": 4, "IL": 5, "IN": 6, "KS": 3, "KY": 5,
        "LA": 3, "MA": 6, "MD": 3, "ME": 6, "MI": 6, "MN": 6, "MO": 5, "MS": 3, "MT": 5,
        "NC": 3, "ND": 6, "NE": 4, "NH": 3, "NJ": 6, "NM": 4, "NV": 4, "NY": 3, "OH": 6,
        "OK": 3, "OR": 6, "PA": 4, "RI": 10, "SC": 3, "SD": 6, "TN": 6, "TX": 4, "UT": 4,
        "VA": 3, "VT": 6, "WA": 3, "WI": 6, "WV": 5, "WY": 8,
    }  # fmt: skip


class LegalSettings(_Section):
    """Legal referral: the stage that hands an account to the company's attorneys
    (`out/legal/<date>/`, docs/legal-referral.md)."""

    attorney: str = Field("Example Legal LLP", min_length=1, description="Who gets the files.")
    min_balance: Decimal = Field(
        Decimal("250.00"), ge=0, description="Smallest collectible balance referred."
    )
    statute_years: dict[str, int] = Field(
        default_factory=_statute_years,
        description="Statute of limitations per state (two letters), in years from the later "
        "of the last payment and the oldest unpaid due date. Verify with counsel.",
    )
    default_statute_years: int = Field(
        3, ge=1, le=20, description="For a state not listed, or no state on file."
    )

    def dbt_vars(self) -> dict[str, object]:
        """What marts.fct_statute_of_limitations reads."""
        return {
            "statute_years": self.statute_years,
            "default_statute_years": self.default_statute_years,
        }


class CreditHoldSettings(_Section):
    """Credit holds: the daily list of accounts billing should stop extending credit or service
    to, and the release list when they cure (`out/credit_holds/<date>/`)."""

    from_stage: str | None = Field(
        "final_notice",
        description="Hold accounts at this stage of their ladder or later (null: never by stage).",
    )
    over_credit_limit: bool = Field(
        True, description="Hold accounts whose total open balance is above their credit limit."
    )


class RetentionSettings(_Section):
    """How long recoup keeps a customer's personal data once they are done with
    (`recoup purge`, docs/data-protection.md)."""

    years: int = Field(
        7,
        ge=1,
        le=100,
        description="A customer whose every account is closed (or settled and inactive) for "
        "longer than this loses their personal data at the next purge; the audit trail stays.",
    )


class DemoSettings(_Section):
    accounts: int = Field(20_000, ge=10, le=5_000_000)
    seed: int = Field(42, ge=0)


class Settings(_Section):
    home: Path = Field(description="RECOUP_HOME: the working folder; set from the environment.")
    company: CompanySettings = CompanySettings()
    collector_type: Literal["first_party", "third_party"] = "first_party"
    paths: PathSettings = PathSettings()
    duckdb: DuckDBSettings = DuckDBSettings()
    ingest: IngestSettings = IngestSettings()
    gates: GateSettings = GateSettings()
    contact: ContactSettings = ContactSettings()
    email: EmailSettings = EmailSettings()
    work_queue: WorkQueueSettings = WorkQueueSettings()
    placement: AgencyPlacementSettings = AgencyPlacementSettings()
    bureau: BureauSettings = BureauSettings()
    servicing: ServicingSettings = ServicingSettings()
    skip_tracing: SkipTracingSettings = SkipTracingSettings()
    negotiation: NegotiationSettings = NegotiationSettings()
    legal: LegalSettings = LegalSettings()
    credit_hold: CreditHoldSettings = CreditHoldSettings()
    retention: RetentionSettings = RetentionSettings()
    demo: DemoSettings = DemoSettings()
    sendgrid_api_key: SecretStr | None = Field(
        None, description="From SENDGRID_API_KEY only; without it emails go to the outbox folder."
    )
    sendgrid_api_host: str = Field(
        DEFAULT_SENDGRID_API_HOST,
        description="From SENDGRID_API_HOST only: a test server can stand in for SendGrid.",
    )
    pii_key: SecretStr | None = Field(
        None,
        description="From RECOUP_PII_KEY only: the key SSNs and dates of birth are encrypted "
        "with (32 random bytes, base64).",
    )
    pii_previous_keys: tuple[SecretStr, ...] = Field(
        (),
        description="From RECOUP_PII_PREVIOUS_KEYS only (comma-separated): older keys that "
        "still open what they encrypted, until `recoup pii encrypt` re-encrypts it.",
    )

    def path(self, name: Literal["warehouse", "out", "outbox", "inbox", "state"]) -> Path:
        """The absolute location of one of the configured paths."""
        configured = Path(getattr(self.paths, name))
        return configured if configured.is_absolute() else self.home / configured

    @property
    def warehouse_path(self) -> Path:
        return self.path("warehouse")

    def duckdb_config(self) -> dict[str, str]:
        """DuckDB's settings for a connection to the warehouse (recoup's and dbt's)."""
        temp = Path(self.duckdb.temp_directory)
        return {
            "memory_limit": self.duckdb.memory_limit,
            "temp_directory": str(temp if temp.is_absolute() else self.home / temp),
        }

    @property
    def sender_name(self) -> str:
        """The From name: the company's own name unless another is set."""
        return self.email.from_name or self.company.name

    @property
    def uses_found_emails(self) -> bool:
        """Whether accepted skip-trace emails are used (skip_tracing.use_found_emails)."""
        chosen = self.skip_tracing.use_found_emails
        return self.collector_type == "first_party" if chosen is None else chosen

    def dbt_vars(self) -> dict[str, object]:
        """The settings the marts read, as dbt vars."""
        return {
            **self.servicing.dbt_vars(),
            **self.negotiation.dbt_vars(),
            **self.legal.dbt_vars(),
        }

    def today(self) -> dt.date:
        """Today's date in the company's time zone (the default as-of date)."""
        return dt.datetime.now(zoneinfo.ZoneInfo(self.company.timezone)).date()


def default_settings_document() -> dict[str, Any]:
    """The file-level defaults, as `recoup.yaml` would hold them."""
    defaults = Settings(home=Path("."))
    return defaults.model_dump(mode="json", exclude=set(ENV_ONLY_FIELDS))


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read recoup.yaml and the environment into one validated, frozen Settings."""
    env = os.environ if environ is None else environ
    home = Path(env.get("RECOUP_HOME") or Path.cwd()).expanduser().resolve()
    config_path = _config_path(env, home)
    document = _read_document(config_path) if config_path else {}
    source = str(config_path) if config_path else "built-in defaults"
    instead = {
        "home": "set RECOUP_HOME instead.",
        "sendgrid_api_key": "secrets come from the environment only: set SENDGRID_API_KEY.",
        "sendgrid_api_host": "set SENDGRID_API_HOST in the environment instead.",
        "pii_key": "secrets come from the environment only: set RECOUP_PII_KEY.",
        "pii_previous_keys": "secrets come from the environment only: set "
        "RECOUP_PII_PREVIOUS_KEYS.",
    }
    for forbidden in ENV_ONLY_FIELDS:
        if forbidden in document:
            raise ConfigError(
                f"{source}: '{forbidden}' cannot be set in the file; {instead[forbidden]}"
            )
    document = _apply_env_overrides(document, env)
    document["home"] = home
    api_key = env.get("SENDGRID_API_KEY")
    document["sendgrid_api_key"] = api_key or None
    document["sendgrid_api_host"] = (
        env.get("SENDGRID_API_HOST") or DEFAULT_SENDGRID_API_HOST
    ).rstrip("/")
    document["pii_key"], document["pii_previous_keys"] = _pii_keys(env)
    try:
        return Settings.model_validate(document)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def _pii_keys(env: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """RECOUP_PII_KEY and RECOUP_PII_PREVIOUS_KEYS, each checked to be a base64 key of 32
    bytes. The messages never show a key."""
    current = (env.get("RECOUP_PII_KEY") or "").strip() or None
    listed = (env.get("RECOUP_PII_PREVIOUS_KEYS") or "").split(",")
    previous = [part.strip() for part in listed if part.strip()]
    if previous and current is None:
        raise ConfigError(
            "RECOUP_PII_PREVIOUS_KEYS is set but RECOUP_PII_KEY is not: set RECOUP_PII_KEY to "
            "the key new values are encrypted with."
        )
    for number, key in enumerate([current, *previous]):
        if key is None:
            continue
        name = "RECOUP_PII_KEY" if number == 0 else f"RECOUP_PII_PREVIOUS_KEYS (key {number})"
        try:
            length = len(base64.b64decode(key, validate=True))
        except (binascii.Error, ValueError):
            length = -1
        if length != PII_KEY_BYTES:
            found = "is not base64" if length < 0 else f"decodes to {length} bytes"
            raise ConfigError(
                f"{name} {found}; a key is {PII_KEY_BYTES} random bytes in base64, for "
                "example from `openssl rand -base64 32`."
            )
    return current, previous


def _config_path(env: Mapping[str, str], home: Path) -> Path | None:
    explicit = env.get("RECOUP_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"RECOUP_CONFIG names {path}, which is not a file.")
        return path
    candidate = home / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def _read_document(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error}).") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, like 'company:'.")
    return loaded


def _apply_env_overrides(document: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged = {
        key: dict(value) if isinstance(value, dict) else value for key, value in document.items()
    }
    sections = {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if name not in ENV_ONLY_FIELDS
    }
    for variable, value in sorted(env.items()):
        if not variable.startswith(ENV_PREFIX) or variable in ENV_NOT_SETTINGS:
            continue
        parts = variable[len(ENV_PREFIX) :].lower().split("__")
        section = parts[0]
        if section not in sections:
            allowed = ", ".join(sorted(f"RECOUP_{name.upper()}" for name in sections))
            raise ConfigError(
                f"{variable} is not a recoup setting; sections are {allowed} "
                "(nested keys as RECOUP_SECTION__KEY), plus RECOUP_HOME and RECOUP_CONFIG."
            )
        model = sections[section]
        if len(parts) == 1:
            if isinstance(model, type) and issubclass(model, BaseModel):
                raise ConfigError(
                    f"{variable} names a whole section; set one key, like "
                    f"{variable}__{next(iter(model.model_fields)).upper()}."
                )
            merged[section] = value
            continue
        if len(parts) != 2 or not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigError(f"{variable} is not a recoup setting (use RECOUP_SECTION__KEY).")
        key = parts[1]
        if key not in model.model_fields:
            allowed = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"{variable}: '{section}' has no key '{key}'; keys are {allowed}.")
        current = merged.get(section)
        parsed: Any = value
        if typing.get_origin(model.model_fields[key].annotation) is list:
            parsed = [item.strip() for item in value.split(",") if item.strip()]
        merged[section] = {**(current if isinstance(current, dict) else {}), key: parsed}
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        if problem["type"] == "extra_forbidden":
            parent = _model_at(problem["loc"][:-1])
            allowed = ", ".join(sorted(parent.model_fields)) if parent else "see recoup.yaml"
            lines.append(f"{source}: '{where}' is not a setting; allowed here: {allowed}.")
        else:
            got = problem.get("input")
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {where} is {got!r}; {message}.")
    return "\n".join(lines)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (isinstance(field.annotation, type)):
            return None
        model = field.annotation
    return model if issubclass(model, BaseModel) else None
