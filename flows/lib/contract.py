"""The billing export contract (SPEC §2) as data: entities, columns, keys and links.

The loader turns these declarations into SQL checks, so the contract is written once.
Entities are listed parents first: a child's foreign keys are checked against parents that
are already validated in the same batch or loaded before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal[
    "text",
    "date",
    "timestamp",
    "amount",
    "enum",
    "positive_integer",
    "currency",
    "country",
    "timezone",
    "ssn",
    "email",
    "language",
]

# SQL type each kind is stored as in the raw schema.
STORAGE_TYPE: dict[ColumnKind, str] = {
    "text": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "amount": "DECIMAL(18,2)",
    "enum": "VARCHAR",
    "positive_integer": "INTEGER",
    "currency": "VARCHAR",
    "country": "VARCHAR",
    "timezone": "VARCHAR",
    "ssn": "VARCHAR",
    "email": "VARCHAR",
    "language": "VARCHAR",
}


# The longest value any text field may hold (names, addresses, ids, descriptions); a longer one
# is quarantined as `too_long`, so a 100,000-character name never reaches a letter or an email.
MAX_TEXT_CHARS = 1_000


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind = "text"
    required: bool = True
    values: tuple[str, ...] = ()  # allowed values of an enum
    default: str | None = None  # value used when the field is empty
    allow_zero: bool = False  # an amount that may be 0 (a credit limit), else it must be > 0
    sensitive: bool = False  # never echo the value in an error message
    multiline: bool = False  # free text that may hold tabs and line breaks (a description)


@dataclass(frozen=True)
class ForeignKey:
    column: str
    parent: str  # entity name
    parent_column: str


@dataclass(frozen=True)
class Entity:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    # The column whose currency must equal its account's currency.
    currency_column: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns if column.required)

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)


def _c(name: str, kind: ColumnKind = "text", **options: object) -> Column:
    return Column(name, kind, **options)  # type: ignore[arg-type]


def _optional(name: str, kind: ColumnKind = "text", **options: object) -> Column:
    return Column(name, kind, required=False, **options)  # type: ignore[arg-type]


CUSTOMERS = Entity(
    name="customers",
    columns=(
        _c("customer_id"),
        _c("customer_type", "enum", values=("consumer", "business")),
        _c("full_name"),
        _optional("email", "email"),
        _optional("phone"),
        _c("address_line1"),
        _optional("address_line2"),
        _c("city"),
        _c("state"),
        _c("postal_code"),
        _c("country", "country"),
        _optional("timezone", "timezone"),
        _optional("date_of_birth", "date", sensitive=True),
        _optional("ssn", "ssn", sensitive=True),
        _optional("language", "language", default="en"),
        _c("created_at", "timestamp"),
    ),
    key=("customer_id",),
)

ACCOUNTS = Entity(
    name="accounts",
    columns=(
        _c("account_id"),
        _c("customer_id"),
        _c("currency", "currency"),
        _c("segment"),
        _c("opened_date", "date"),
        _c("status", "enum", values=("active", "closed")),
        _optional("credit_limit", "amount", allow_zero=True),
    ),
    key=("account_id",),
    foreign_keys=(ForeignKey("customer_id", "customers", "customer_id"),),
)

INVOICES = Entity(
    name="invoices",
    columns=(
        _c("invoice_id"),
        _c("account_id"),
        _c("invoice_number"),
        _c("issue_date", "date"),
        _c("due_date", "date"),
        _c("amount", "amount"),
        _c("currency", "currency"),
        _optional("description", multiline=True),
    ),
    key=("invoice_id",),
    foreign_keys=(ForeignKey("account_id", "accounts", "account_id"),),
    currency_column="currency",
)

PAYMENTS = Entity(
    name="payments",
    columns=(
        _c("payment_id"),
        _c("account_id"),
        _optional("invoice_id"),
        _c("received_date", "date"),
        _c("amount", "amount"),
        _c("currency", "currency"),
        _c("method", "enum", values=("card", "ach", "check", "wire", "cash", "other")),
        _optional("reverses_payment_id"),
    ),
    key=("payment_id",),
    foreign_keys=(
        ForeignKey("account_id", "accounts", "account_id"),
        ForeignKey("invoice_id", "invoices", "invoice_id"),
        ForeignKey("reverses_payment_id", "payments", "payment_id"),
    ),
    currency_column="currency",
)

ADJUSTMENTS = Entity(
    name="adjustments",
    columns=(
        _c("adjustment_id"),
        _c("account_id"),
        _optional("invoice_id"),
        _c(
            "kind",
            "enum",
            values=("credit_note", "write_off", "fee", "interest", "refund"),
        ),
        _c("amount", "amount"),
        _c("currency", "currency"),
        _c("effective_date", "date"),
        _optional("reason", multiline=True),
    ),
    key=("adjustment_id",),
    foreign_keys=(
        ForeignKey("account_id", "accounts", "account_id"),
        ForeignKey("invoice_id", "invoices", "invoice_id"),
    ),
    currency_column="currency",
)

DISPUTES = Entity(
    name="disputes",
    columns=(
        _c("dispute_id"),
        _c("account_id"),
        _optional("invoice_id"),
        _optional("amount", "amount"),
        _c("opened_date", "date"),
        _optional("resolved_date", "date"),
        _optional("resolution", "enum", values=("upheld", "rejected")),
    ),
    key=("dispute_id",),
    foreign_keys=(
        ForeignKey("account_id", "accounts", "account_id"),
        ForeignKey("invoice_id", "invoices", "invoice_id"),
    ),
)

PAYMENT_PLANS = Entity(
    name="payment_plans",
    columns=(
        _c("plan_id"),
        _c("account_id"),
        _c("kind", "enum", values=("promise_to_pay", "installment_plan")),
        _c("installment_no", "positive_integer"),
        _c("due_date", "date"),
        _c("amount", "amount"),
        _c("created_date", "date"),
        _optional("cancelled_date", "date"),
    ),
    key=("plan_id", "installment_no"),
    foreign_keys=(ForeignKey("account_id", "accounts", "account_id"),),
)

ACCOUNT_FLAGS = Entity(
    name="account_flags",
    columns=(
        _c("customer_id"),
        _optional("account_id"),
        _c(
            "flag",
            "enum",
            values=(
                "bankruptcy",
                "deceased",
                "cease_communication",
                "attorney_represented",
                "do_not_email",
                "do_not_call",
                "fraud",
                "servicemember",
                "legal_hold",
            ),
        ),
        _c("start_date", "date"),
        _optional("end_date", "date"),
    ),
    # account_id is part of the key and may be NULL (= every account of the customer).
    key=("customer_id", "account_id", "flag", "start_date"),
    foreign_keys=(
        ForeignKey("customer_id", "customers", "customer_id"),
        ForeignKey("account_id", "accounts", "account_id"),
    ),
)

ENTITIES: tuple[Entity, ...] = (
    CUSTOMERS,
    ACCOUNTS,
    INVOICES,
    PAYMENTS,
    ADJUSTMENTS,
    DISPUTES,
    PAYMENT_PLANS,
    ACCOUNT_FLAGS,
)
ENTITY_BY_NAME: dict[str, Entity] = {entity.name: entity for entity in ENTITIES}
FILE_FORMATS = ("csv", "parquet")
