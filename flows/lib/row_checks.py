"""SQL for the contract checks of one row (SPEC §2), generated from `contract.py`.

Each column yields at most one problem: a short code for machines and a message for people
that names the column, shows the value (unless it is sensitive) and says what is expected.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.lib.contract import MAX_TEXT_CHARS, Column, Entity

DATE_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TIMESTAMP_PATTERN = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)"
)
AMOUNT_PATTERN = r"[0-9]{1,16}(\.[0-9]{1,2})?"
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[^@\s]+"
LANGUAGE_PATTERN = r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*"
SHOWN_VALUE_CHARS = 40
# Free text is checked for its length and for control characters (NUL, escape, a line break in
# a name, which would add a line to an envelope or break an email header); the other kinds have
# formats of their own that no such value passes.
FREE_TEXT_KINDS = ("text", "email")
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
CONTROL_CHARACTERS_BUT_TAB_AND_LINE_BREAKS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"

# Reference lists the loader creates as temporary tables before checking.
REFERENCE_TABLES = {
    "currency": "_iso_currencies",
    "country": "_iso_countries",
    "timezone": "_iana_timezones",
}


@dataclass(frozen=True)
class Problem:
    condition: str  # SQL, true when the value breaks the rule
    code: str
    message: str  # SQL expression producing the message

    @property
    def code_sql(self) -> str:
        return _literal(self.code)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _shown(column: Column) -> str:
    """SQL for the value as quoted in a message."""
    if column.sensitive:
        return _literal("(value hidden)")
    return f"'''' || left({column.name}, {SHOWN_VALUE_CHARS}) || ''''"


def _says(column: Column, text: str) -> str:
    return f"{_literal(column.name + ' ')} || {_shown(column)} || {_literal(' ' + text)}"


def column_problems(column: Column) -> list[Problem]:
    """The rules for one column, first match wins."""
    name = column.name
    problems: list[Problem] = []
    if column.required:
        problems.append(
            Problem(
                f"{name} is null", "missing_value", _literal(f"{name} is empty; it is required")
            )
        )
    present = f"{name} is not null"
    kind = column.kind
    if kind in FREE_TEXT_KINDS:
        problems += _free_text_problems(column)
    if kind == "date":
        problems.append(
            Problem(
                f"{present} and (not regexp_full_match({name}, '{DATE_PATTERN}') "
                f"or try_strptime({name}, '%Y-%m-%d') is null)",
                "bad_date",
                _says(column, "is not a real date; write YYYY-MM-DD, like 2026-03-31"),
            )
        )
    elif kind == "timestamp":
        problems.append(
            Problem(
                f"{present} and (not regexp_full_match({name}, '{TIMESTAMP_PATTERN}') "
                f"or try_cast({name} as TIMESTAMPTZ) is null)",
                "bad_timestamp",
                _says(
                    column,
                    "is not an ISO 8601 timestamp with offset, like 2026-03-31T09:30:00-05:00",
                ),
            )
        )
    elif kind == "amount":
        minimum = "0 or more" if column.allow_zero else "greater than 0"
        problems += [
            Problem(
                f"{present} and starts_with({name}, '-')",
                "negative_amount",
                _says(
                    column,
                    "is negative; amounts are positive (refunds, reversals and credits "
                    "have rows of their own)",
                ),
            ),
            Problem(
                f"{present} and regexp_full_match({name}, '[0-9]*\\.[0-9]{{3,}}')",
                "bad_amount",
                _says(column, "has more than 2 decimals"),
            ),
            Problem(
                f"{present} and not regexp_full_match({name}, '{AMOUNT_PATTERN}')",
                "bad_amount",
                _says(
                    column,
                    "is not a decimal amount; write digits with at most 2 decimals, like "
                    "120.50 (no exponent, sign, currency symbol or thousands separator)",
                ),
            ),
        ]
        if not column.allow_zero:
            problems.append(
                Problem(
                    f"{present} and cast({name} as DECIMAL(18,2)) = 0",
                    "zero_amount",
                    _says(column, f"must be {minimum}"),
                )
            )
    elif kind == "enum":
        allowed = ", ".join(_literal(value) for value in column.values)
        problems.append(
            Problem(
                f"{present} and {name} not in ({allowed})",
                "unknown_value",
                _says(column, f"is not one of: {', '.join(column.values)}"),
            )
        )
    elif kind == "positive_integer":
        problems.append(
            Problem(
                f"{present} and (not regexp_full_match({name}, '[0-9]{{1,9}}') "
                f"or cast({name} as INTEGER) = 0)",
                "bad_integer",
                _says(column, "is not a whole number of 1 or more"),
            )
        )
    elif kind in REFERENCE_TABLES:
        example = {"currency": "USD", "country": "US", "timezone": "America/Chicago"}[kind]
        standard = {
            "currency": "an ISO 4217 currency code",
            "country": "an ISO 3166 alpha-2 country code",
            "timezone": "an IANA time zone",
        }[kind]
        problems.append(
            Problem(
                f"{present} and {name} not in (select code from {REFERENCE_TABLES[kind]})",
                f"unknown_{kind}",
                _says(column, f"is not {standard}, like {example}"),
            )
        )
    elif kind == "ssn":
        problems.append(
            Problem(
                f"{present} and not regexp_full_match({name}, '[0-9]{{9}}')",
                "bad_ssn",
                _literal(f"{name} is not 9 digits (digits only, no dashes)"),
            )
        )
    elif kind == "email":
        problems.append(
            Problem(
                f"{present} and not regexp_full_match({name}, '{EMAIL_PATTERN}')",
                "bad_email",
                _says(column, "is not an email address"),
            )
        )
    elif kind == "language":
        problems.append(
            Problem(
                f"{present} and not regexp_full_match({name}, '{LANGUAGE_PATTERN}')",
                "bad_language",
                _says(column, "is not a BCP 47 language tag, like en or es-US"),
            )
        )
    return problems


def _free_text_problems(column: Column) -> list[Problem]:
    """Too long, or holding a control character (tabs and line breaks only in free text that
    may span lines, like an invoice description)."""
    name = column.name
    if column.multiline:
        pattern = CONTROL_CHARACTERS_BUT_TAB_AND_LINE_BREAKS
        what = "holds a NUL byte or another control character; only tabs and line breaks fit"
    else:
        pattern = CONTROL_CHARACTERS
        what = "holds a line break, a tab or another control character; write it on one line"
    return [
        Problem(
            f"{name} is not null and length({name}) > {MAX_TEXT_CHARS}",
            "too_long",
            f"{_literal(name + ' is ')} || format('{{:,}}', length({name})) || "
            f"{_literal(f' characters long; at most {MAX_TEXT_CHARS:,} are accepted')}",
        ),
        Problem(
            f"{name} is not null and regexp_matches({name}, '{pattern}')",
            "control_character",
            _literal(f"{name} {what}"),
        ),
    ]


def _first_match(problems: list[Problem], field: str) -> str:
    branches = " ".join(
        f"when {problem.condition} then {getattr(problem, field)}" for problem in problems
    )
    return f"case {branches} end"


def row_problem_lists(entity: Entity) -> tuple[str, str]:
    """SQL for two lists per row: problem codes and problem messages (empty when clean)."""
    code_items, message_items = [], []
    for column in entity.columns:
        problems = column_problems(column)
        if not problems:
            continue
        code_items.append(_first_match(problems, "code_sql"))
        message_items.append(_first_match(problems, "message"))
    codes = f"list_filter([{', '.join(code_items)}], lambda x: x is not null)"
    messages = f"list_filter([{', '.join(message_items)}], lambda x: x is not null)"
    return codes, messages


def typed_value(column: Column) -> str:
    """SQL turning the checked text of a column into its stored type (NULL when invalid)."""
    name = column.name
    source = f"coalesce({name}, {_literal(column.default)})" if column.default else name
    kind = column.kind
    if kind == "date":
        return f"cast(try_strptime({source}, '%Y-%m-%d') as DATE)"
    if kind == "timestamp":
        return f"try_cast({source} as TIMESTAMPTZ)"
    if kind == "amount":
        return (
            f"case when regexp_full_match({source}, '{AMOUNT_PATTERN}') "
            f"then cast({source} as DECIMAL(18,2)) end"
        )
    if kind == "positive_integer":
        return f"try_cast({source} as INTEGER)"
    return source
