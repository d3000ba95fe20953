"""SSNs and dates of birth at rest: encrypted in raw.customers, decrypted only to write a file.

The loader encrypts the contract's two `sensitive` columns (`ssn`, `date_of_birth`) before
they reach a table, with AES-256-GCM under a key from the environment (RECOUP_PII_KEY: 32
random bytes, base64). An encrypted value is text:

    pii1:<key id>:<base64 of nonce (12 bytes) + ciphertext + tag (16 bytes)>

The key id (8 hex digits of a SHA-256 of the key) names the key that encrypted it, so a wrong
key is reported as such and a previous key still opens what it encrypted (rotation). The
associated data is `<column>:<customer_id>`: a value copied into another row or column does
not open. Beside them, in the clear, the parts analysts use: `ssn_last4` and `birth_year`.
No other table, view, mart, log or file holds a full SSN or date of birth; the two files that
need them decrypt them in memory at file time (`restricted_identities`): the Metro 2 file
(both) and the skip-trace request file (the date of birth).

Keys (`keyring_for`): RECOUP_PII_KEY, plus RECOUP_PII_PREVIOUS_KEYS during a rotation; without
them, the demo key `state/pii_demo.key` that `recoup demo` writes when no key is set. With no
key at all, the flows refuse a batch that carries an SSN or a date of birth (nothing is
written, the batch stays in the inbox), and a file that needs them says so.

A warehouse from before this module (raw.customers holding them in the clear) is refused when
opened for writing until `recoup pii encrypt` (`protect_warehouse`) has encrypted it. That
command also re-encrypts values under a previous key with the current one. Both rewrite the
file (`rewrite_warehouse`), because DuckDB leaves an updated value's old bytes in freed blocks.
Design, key handling and rotation: docs/data-protection.md.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flows.lib.config import PII_KEY_BYTES, Settings
from flows.lib.contract import CUSTOMERS, Entity
from flows.lib.output_files import (
    fsync_folder,
    owner_only_folder,
    owner_only_spill_folder,
    write_atomically,
)

FORMAT = "pii1"
NONCE_BYTES = 12
SEALED_COLUMNS: tuple[str, ...] = tuple(c.name for c in CUSTOMERS.columns if c.sensitive)
# What stays readable beside the encrypted values, per entity: (column, type, SQL over the
# value in the clear). Stored after the load metadata columns (older tables gained them there).
CLEAR_PARTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    CUSTOMERS.name: (
        ("ssn_last4", "VARCHAR", "right(ssn, 4)"),
        ("birth_year", "INTEGER", "year(date_of_birth)"),
    ),
}
ENCRYPT_FUNCTION = "recoup_pii_encrypt"
REENCRYPT_FUNCTION = "recoup_pii_reencrypt"
DEMO_KEY_FILE = "pii_demo.key"
NEW_KEY_HINT = "`openssl rand -base64 32` makes one"


class PiiError(RuntimeError):
    """An SSN or a date of birth cannot be encrypted or decrypted; the message says why and
    what to do (it never shows a key or a value)."""


class PiiKeyMissing(PiiError):
    """No key is set, and something needs one."""


class PiiKeyWrong(PiiError):
    """The values were encrypted with a key that is not set, or do not decrypt."""


class ClearPiiInWarehouse(PiiError):
    """The warehouse holds SSNs or dates of birth in the clear (loaded by an older recoup)."""


def key_id(key: bytes) -> str:
    """The public name of a key: 8 hex digits of a SHA-256 (not enough to guess it by)."""
    return hashlib.sha256(b"recoup-pii-key-id:" + key).hexdigest()[:8]


def decode_key(text: str, where: str) -> bytes:
    """A base64 key of 32 bytes, or PiiKeyWrong naming `where` it came from."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != PII_KEY_BYTES:
        raise PiiKeyWrong(f"{where} is not a base64 key of {PII_KEY_BYTES} bytes ({NEW_KEY_HINT}).")
    return key


def new_key_text() -> str:
    """A fresh random key, base64."""
    return base64.b64encode(os.urandom(PII_KEY_BYTES)).decode("ascii")


@dataclass(frozen=True, repr=False)
class Keyring:
    """The current key (encrypts) and the previous ones (still decrypt), first one current.
    Its repr shows key ids only."""

    keys: tuple[bytes, ...]
    _ciphers: dict[str, AESGCM] = field(init=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a keyring needs a key")
        object.__setattr__(self, "_ciphers", {key_id(key): AESGCM(key) for key in self.keys})

    def __repr__(self) -> str:
        return f"Keyring(current={self.current_id}, previous={list(self.ids[1:])})"

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id(key) for key in self.keys)

    def encrypt(self, customer_id: str, column: str, value: str) -> str:
        return self.encrypt_many([customer_id], [column], [value])[0]  # type: ignore[return-value]

    def encrypt_many(
        self,
        customer_ids: Sequence[str | None],
        columns: Sequence[str | None],
        values: Sequence[str | None],
    ) -> list[str | None]:
        """Each value encrypted under the current key (None stays None)."""
        current = self.current_id
        cipher = self._ciphers[current]
        nonces = os.urandom(NONCE_BYTES * len(values))
        prefix = f"{FORMAT}:{current}:"
        out: list[str | None] = []
        for number, (customer_id, column, value) in enumerate(
            zip(customer_ids, columns, values, strict=True)
        ):
            if value is None:
                out.append(None)
                continue
            nonce = nonces[number * NONCE_BYTES : (number + 1) * NONCE_BYTES]
            sealed = cipher.encrypt(nonce, value.encode("utf-8"), _associated(customer_id, column))
            out.append(prefix + base64.b64encode(nonce + sealed).decode("ascii"))
        return out

    def decrypt(self, customer_id: str, column: str, stored: str) -> str:
        """The clear value of one stored value; PiiKeyWrong when no key of the ring opens it."""
        parts = stored.split(":")
        if len(parts) != 3 or parts[0] != FORMAT:
            raise PiiKeyWrong(
                f"the {column} of customer {customer_id} in raw.customers is not encrypted (it "
                "was written around the loader); run `recoup pii encrypt`."
            )
        cipher = self._ciphers.get(parts[1])
        if cipher is None:
            raise PiiKeyWrong(_unknown_keys_message({parts[1]}, self))
        try:
            blob = base64.b64decode(parts[2], validate=True)
            clear = cipher.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated(customer_id, column)
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise PiiKeyWrong(
                f"the {column} of customer {customer_id} does not decrypt with key {parts[1]}: "
                "the stored value was altered, or copied from another customer or column."
            ) from None
        return clear.decode("utf-8")

    def reencrypt(self, customer_id: str, column: str, stored: str) -> str:
        """`stored` under the current key: a clear value encrypted, one under a previous key
        decrypted and encrypted again, one under the current key unchanged."""
        if not stored.startswith(f"{FORMAT}:"):
            return self.encrypt(customer_id, column, stored)
        if stored.startswith(f"{FORMAT}:{self.current_id}:"):
            return stored
        return self.encrypt(customer_id, column, self.decrypt(customer_id, column, stored))


def _associated(customer_id: str | None, column: str | None) -> bytes:
    return f"{column}:{customer_id}".encode()


def keyring_for(settings: Settings) -> Keyring | None:
    """The keys from the environment; else the demo key in the state folder; else None."""
    previous = tuple(
        decode_key(key.get_secret_value(), "RECOUP_PII_PREVIOUS_KEYS")
        for key in settings.pii_previous_keys
    )
    if settings.pii_key is not None:
        current = decode_key(settings.pii_key.get_secret_value(), "RECOUP_PII_KEY")
        return Keyring((current, *previous))
    demo = demo_key_path(settings)
    if demo.is_file():
        return Keyring((decode_key(demo.read_text(encoding="ascii"), str(demo)),))
    return None


def demo_key_path(settings: Settings) -> Path:
    return settings.path("state") / DEMO_KEY_FILE


def ensure_demo_key(settings: Settings) -> Path | None:
    """For `recoup demo` without RECOUP_PII_KEY: write a random key to `state/pii_demo.key`
    (owner-only) unless one is there. Returns its path when it was written now."""
    path = demo_key_path(settings)
    if settings.pii_key is not None or path.exists():
        return None
    owner_only_folder(path.parent)
    return write_atomically(path, (new_key_text() + "\n").encode("ascii"))


# --- ingest -------------------------------------------------------------------------------


def stored_values_sql(entity: Entity, *, encrypted: bool) -> list[str]:
    """The loader's select list for the contract columns of `entity`: a sensitive column
    encrypted (inside `encrypting`), or NULL when no key is given; the others as they are."""
    key = entity.key[0]

    def value(name: str, sensitive: bool) -> str:
        if not sensitive:
            return name
        if not encrypted:
            return "NULL::VARCHAR"
        return f"{ENCRYPT_FUNCTION}({key}, '{name}', {name}::VARCHAR)"

    return [value(column.name, column.sensitive) for column in entity.columns]


def clear_part_columns(entity: Entity) -> list[tuple[str, str]]:
    """The clear parts `entity`'s raw table stores after its load metadata: (name, type)."""
    return [(name, sql_type) for name, sql_type, _ in CLEAR_PARTS.get(entity.name, ())]


def clear_parts_sql(entity: Entity) -> list[str]:
    """SQL for the clear parts, over the typed values in the clear (the loader's `_checked`)."""
    return [expression for _, _, expression in CLEAR_PARTS.get(entity.name, ())]


@contextlib.contextmanager
def encrypting(connection: duckdb.DuckDBPyConnection, keyring: Keyring | None) -> Iterator[None]:
    """While the block runs, SQL on `connection` can call
    recoup_pii_encrypt(customer_id, column, value) and recoup_pii_reencrypt(...): vectorised,
    one Python call per 2,048 rows. Without a keyring, nothing is registered."""
    if keyring is None:
        yield
        return

    def encrypt(ids: pa.Array, columns: pa.Array, values: pa.Array) -> pa.Array:
        return pa.array(
            keyring.encrypt_many(ids.to_pylist(), columns.to_pylist(), values.to_pylist()),
            pa.string(),
        )

    def reencrypt(ids: pa.Array, columns: pa.Array, values: pa.Array) -> pa.Array:
        return pa.array(
            [
                None if value is None else keyring.reencrypt(customer_id, column, value)
                for customer_id, column, value in zip(
                    ids.to_pylist(), columns.to_pylist(), values.to_pylist(), strict=True
                )
            ],
            pa.string(),
        )

    for name, function in ((ENCRYPT_FUNCTION, encrypt), (REENCRYPT_FUNCTION, reencrypt)):
        connection.create_function(
            name,
            function,
            ["VARCHAR", "VARCHAR", "VARCHAR"],
            "VARCHAR",
            type="arrow",
            null_handling="special",
            side_effects=True,  # a fresh nonce each call: never folded or cached
        )
    try:
        yield
    finally:
        for name in (ENCRYPT_FUNCTION, REENCRYPT_FUNCTION):
            connection.remove_function(name)


def refuse_without_key(
    connection: duckdb.DuckDBPyConnection, read_table: str, columns: Sequence[str], file_name: str
) -> None:
    """Raise PiiKeyMissing when the customers file read into `read_table` carries an SSN or a
    date of birth: without a key they cannot be stored."""
    present = [name for name in SEALED_COLUMNS if name in columns]
    if not present:
        return
    where = " or ".join(f"nullif(trim({name}), '') is not null" for name in present)
    count = connection.execute(f"select count(*) from {read_table} where {where}").fetchall()[0][0]
    if count:
        raise PiiKeyMissing(
            f"{file_name}: {count:,} customers carry an SSN or a date of birth, and no key is "
            "set to encrypt them. Set RECOUP_PII_KEY to a base64 key of 32 random bytes "
            f"({NEW_KEY_HINT}; keep it in your secret store, not beside the warehouse) and load "
            "again. Nothing was written; the batch stays where it is."
        )


def check_keyring(connection: duckdb.DuckDBPyConnection, keyring: Keyring) -> None:
    """Refuse a keyring that cannot open what the newest customers batch holds (a wrong
    RECOUP_PII_KEY), before anything is loaded under it. The newest batch only: its rows are
    found by the batch id's zone maps, so the check stays cheap however long the history;
    `recoup pii encrypt` and the files check every value they touch."""
    newest = connection.execute("select max(_batch_id) from raw.customers").fetchall()[0][0]
    if newest is None:
        return
    unknown = set(stored_key_ids(connection, batch_id=newest)) - set(keyring.ids) - {""}
    if unknown:
        raise PiiKeyWrong(_unknown_keys_message(unknown, keyring) + " Nothing was written.")


def stored_key_ids(
    connection: duckdb.DuckDBPyConnection, *, batch_id: int | None = None
) -> dict[str, int]:
    """Values in raw.customers (of one batch, or all) per key id that encrypted them ('' for
    values in the clear)."""
    where = "" if batch_id is None else f"where _batch_id = {int(batch_id)}"
    rows = connection.execute(
        f"""
        select split_part(value, ':', 2) as key_id, count(*)
        from (
            select ssn as value from raw.customers {where}
            union all
            select date_of_birth from raw.customers {where}
        )
        where value is not null
        group by 1
        """
    ).fetchall()
    return {key: count for key, count in rows}


def _unknown_keys_message(unknown: set[str], keyring: Keyring) -> str:
    named = ", ".join(sorted(unknown))
    previous = ", ".join(keyring.ids[1:]) or "none"
    return (
        f"raw.customers holds SSNs or dates of birth encrypted with key {named}, and the keys "
        f"set are RECOUP_PII_KEY {keyring.current_id} (previous keys: {previous}). Set "
        "RECOUP_PII_KEY to the key they were encrypted with; to move to a new key, put the old "
        "one in RECOUP_PII_PREVIOUS_KEYS and run `recoup pii encrypt`."
    )


# --- files that need them -----------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class RestrictedIdentity:
    """A customer's full SSN and date of birth, decrypted for one file. Never logged: its repr
    hides both."""

    ssn: str | None
    date_of_birth: dt.date | None

    def __repr__(self) -> str:
        return "RestrictedIdentity(ssn=(hidden), date_of_birth=(hidden))"


def restricted_identities(
    connection: duckdb.DuckDBPyConnection,
    keyring: Keyring | None,
    customer_ids: Sequence[str],
    *,
    needed_for: str,
) -> dict[str, RestrictedIdentity]:
    """The decrypted SSN and date of birth of these customers (newest version), for the file
    `needed_for` names; customers without either are left out."""
    if not customer_ids:
        return {}
    rows = connection.execute(
        """
        select customer_id, ssn, date_of_birth
        from raw.customers_latest
        where
            (ssn is not null or date_of_birth is not null)
            and customer_id in (select unnest(?))
        """,
        [list(customer_ids)],
    ).fetchall()
    if rows and keyring is None:
        raise PiiKeyMissing(
            f"{needed_for} needs the customers' encrypted SSNs or dates of birth, and no key is "
            "set: set RECOUP_PII_KEY to the key they were encrypted with. Nothing was written."
        )
    identities = {}
    for customer_id, ssn, born in rows:
        assert keyring is not None
        identities[customer_id] = RestrictedIdentity(
            ssn=keyring.decrypt(customer_id, "ssn", ssn) if ssn else None,
            date_of_birth=(
                dt.date.fromisoformat(keyring.decrypt(customer_id, "date_of_birth", born))
                if born
                else None
            ),
        )
    return identities


# --- existing warehouses and rotation -----------------------------------------------------


def _customer_columns(connection: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(
        connection.execute(
            "select column_name, data_type from duckdb_columns() "
            "where database_name = current_database() and schema_name = 'raw' "
            "and table_name = 'customers'"
        ).fetchall()
    )


def is_legacy_customers_table(connection: duckdb.DuckDBPyConnection) -> bool:
    """raw.customers exists in the shape of a recoup from before encryption (no clear parts,
    a DATE date of birth)."""
    columns = _customer_columns(connection)
    return bool(columns) and any(name not in columns for name, _ in clear_part_columns(CUSTOMERS))


def upgrade_legacy_customers_table(connection: duckdb.DuckDBPyConnection) -> None:
    """Give an older raw.customers its new shape: ssn and date_of_birth as text, the clear
    parts computed from the values in the clear. Call `encrypt_stored_values` next, in the same
    transaction, when any value is there."""
    columns = _customer_columns(connection)
    for name in SEALED_COLUMNS:
        if columns.get(name) != "VARCHAR":
            connection.execute(f"alter table raw.customers alter {name} type VARCHAR")
    for name, sql_type in clear_part_columns(CUSTOMERS):
        if name not in columns:
            connection.execute(f"alter table raw.customers add column {name} {sql_type}")
    connection.execute(
        f"""
        update raw.customers
        set ssn_last4 = right(ssn, 4), birth_year = year(try_cast(date_of_birth as DATE))
        where not starts_with(coalesce(ssn, ''), '{FORMAT}:')
            and not starts_with(coalesce(date_of_birth, ''), '{FORMAT}:')
        """
    )


def refuse_clear_values(connection: duckdb.DuckDBPyConnection, warehouse: str) -> None:
    """For opening a warehouse for writing: an older raw.customers with no SSN or date of birth
    gets its new shape here; one that holds them in the clear is refused (nothing changed)."""
    if not is_legacy_customers_table(connection):
        return
    count = connection.execute(
        "select count(*) from raw.customers where ssn is not null or date_of_birth is not null"
    ).fetchall()[0][0]
    if count == 0:
        upgrade_legacy_customers_table(connection)
        return
    raise ClearPiiInWarehouse(
        f"{warehouse} was loaded by a recoup that kept SSNs and dates of birth in the clear: "
        f"raw.customers holds {count:,} rows with them. Set RECOUP_PII_KEY ({NEW_KEY_HINT}) and "
        "run `recoup pii encrypt` once: it encrypts them and rewrites the file so no clear copy "
        "remains in it. Nothing was changed."
    )


@dataclass(frozen=True)
class ProtectOutcome:
    """What `recoup pii encrypt` did."""

    encrypted: int  # values that were in the clear
    reencrypted: int  # values under a previous key, now under the current one
    key_id: str
    rewritten: bool
    dropped: tuple[str, ...] = ()  # full-value columns an older build left outside raw

    def __str__(self) -> str:
        if not self.rewritten:
            return (
                f"Every SSN and date of birth in raw.customers is encrypted with key "
                f"{self.key_id}; nothing to do."
            )
        dropped = (
            f" Dropped {', '.join(self.dropped)} (the next build leaves them out)."
            if (self.dropped)
            else ""
        )
        return (
            f"Encrypted {self.encrypted:,} SSNs and dates of birth that were in the clear and "
            f"re-encrypted {self.reencrypted:,} under a previous key, all now with key "
            f"{self.key_id}; the warehouse file was rewritten, so it keeps no older copy." + dropped
        )


def protect_warehouse(
    path: Path, keyring: Keyring, config: Mapping[str, str] | None = None
) -> ProtectOutcome:
    """Encrypt every SSN and date of birth in raw.customers (every version) with the current
    key: values in the clear (an older warehouse) and values under a previous key. One
    transaction; then the file is rewritten. Running it again changes nothing. `config`
    holds the DuckDB limits (Settings.duckdb_config)."""
    connection = _connect(path, config)
    try:
        if not _customer_columns(connection):
            return ProtectOutcome(0, 0, keyring.current_id, rewritten=False)
        connection.execute("begin transaction")
        try:
            legacy = is_legacy_customers_table(connection)
            if legacy:
                upgrade_legacy_customers_table(connection)
            dropped = _drop_full_values_outside_raw(connection)
            stored = stored_key_ids(connection)
            unknown = set(stored) - set(keyring.ids) - {""}
            if unknown:
                raise PiiKeyWrong(_unknown_keys_message(unknown, keyring) + " Nothing changed.")
            clear = stored.get("", 0)
            reencrypted = sum(
                count for key, count in stored.items() if key not in ("", keyring.current_id)
            )
            if clear or reencrypted:
                with encrypting(connection, keyring):
                    connection.execute(
                        f"""
                        update raw.customers
                        set ssn = {REENCRYPT_FUNCTION}(customer_id, 'ssn', ssn),
                            date_of_birth = {REENCRYPT_FUNCTION}(
                                customer_id, 'date_of_birth', date_of_birth
                            )
                        where not starts_with(coalesce(ssn, '{FORMAT}:{keyring.current_id}:'),
                                '{FORMAT}:{keyring.current_id}:')
                            or not starts_with(
                                coalesce(date_of_birth, '{FORMAT}:{keyring.current_id}:'),
                                '{FORMAT}:{keyring.current_id}:')
                        """
                    )
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise
    finally:
        connection.close()
    changed = legacy or bool(clear or reencrypted or dropped)
    if changed:
        rewrite_warehouse(path, config)
    return ProtectOutcome(clear, reencrypted, keyring.current_id, changed, tuple(dropped))


def _drop_full_values_outside_raw(connection: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the ssn and date_of_birth columns of tables outside raw (an older build's
    marts.dim_customers kept the date of birth in the clear); their names."""
    names = ", ".join(f"'{name}'" for name in SEALED_COLUMNS)
    found = connection.execute(
        f"""
        select columns.schema_name, columns.table_name, columns.column_name
        from duckdb_columns() as columns
        inner join duckdb_tables() as tables
            on columns.database_name = tables.database_name
            and columns.schema_name = tables.schema_name
            and columns.table_name = tables.table_name
        where columns.database_name = current_database() and columns.schema_name <> 'raw'
            and columns.column_name in ({names})
        order by all
        """
    ).fetchall()
    for schema, table, column in found:
        connection.execute(f'alter table "{schema}"."{table}" drop column "{column}"')
    return [f"{schema}.{table}.{column}" for schema, table, column in found]


def _connect(path: Path, config: Mapping[str, str] | None) -> duckdb.DuckDBPyConnection:
    """The warehouse with the DuckDB limits (its spill folder owner-only)."""
    owner_only_spill_folder(config)
    return duckdb.connect(str(path), config=dict(config or {}))


def rewrite_warehouse(path: Path, config: Mapping[str, str] | None = None) -> None:
    """Copy the warehouse into a fresh file and put it in place of the old one (owner-only).

    DuckDB keeps an updated or deleted value's old bytes in freed blocks of the file until it
    reuses them; a fresh copy holds only what the tables hold now. Run it with no other
    connection open (the run lock)."""
    fresh = path.with_name(f".{path.name}.rewrite")
    for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
        leftover.unlink(missing_ok=True)
    connection = _connect(path, config)
    try:
        name = connection.execute("select current_database()").fetchall()[0][0]
        quoted = str(fresh).replace("'", "''")
        connection.execute(f"attach '{quoted}' as _rewrite")
        connection.execute(f'copy from database "{name}" to _rewrite')
        connection.execute("detach _rewrite")
    finally:
        connection.close()
    os.chmod(fresh, 0o600)
    with open(fresh, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(fresh, path)
    fsync_folder(path.parent)
