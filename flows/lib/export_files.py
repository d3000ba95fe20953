"""Find the files of a billing-export batch and check that each can be read at all.

A batch is a folder with one file per entity, `<entity>.csv` or `<entity>.parquet` (SPEC §2).
Everything here happens before the warehouse is touched: a file that cannot be parsed (no
header, wrong header, not UTF-8, not CSV, a broken Parquet file) fails the whole batch with
a message that names the file and says what to do, and nothing from the batch is loaded.

recoup reads only inside the folder it is given: an export file that is a symbolic link to a
file outside its batch folder, or a batch folder linked from outside the inbox, is refused
(a link could make recoup load, or list in an error, any file the process can read). File
names are shown with `repr` when they hold a line break or another control character, so a
name cannot forge lines in a message or a log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from flows.lib.contract import ENTITIES, ENTITY_BY_NAME, FILE_FORMATS, Entity

HEADER_PROBE_BYTES = 1 << 16


class BatchError(ValueError):
    """The batch cannot be loaded; nothing from it was written."""


@dataclass(frozen=True)
class ExportFile:
    entity: Entity
    path: Path
    file_format: Literal["csv", "parquet"]
    columns: tuple[str, ...]  # in file order
    content_hash: str
    size_bytes: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Batch:
    folder: Path
    files: tuple[ExportFile, ...]
    ignored: tuple[str, ...] = field(default=())


def batch_folders(path: Path) -> list[Path]:
    """The batch folders under `path`: itself when it holds export files, else its
    subfolders that do, oldest name first (so an inbox of dated folders loads in order)."""
    if not path.exists():
        raise BatchError(f"{path}: no such folder. Pass the folder that holds the export files.")
    if not path.is_dir():
        raise BatchError(f"{path} is a file; pass the folder that holds it (one file per entity).")
    if _export_candidates(path):
        return [path]
    subfolders = sorted(_batch_subfolders(path), key=_natural_order)
    if not subfolders:
        expected = ", ".join(f"{entity.name}.csv" for entity in ENTITIES)
        raise BatchError(
            f"{path}: no billing export files here or in its subfolders; expected files like "
            f"{expected} (or .parquet)."
        )
    return subfolders


def inbox_batch_folders(inbox: Path) -> list[Path]:
    """The batch folders waiting in the inbox; none (not an error) when it is empty."""
    if not inbox.is_dir():
        return []
    if _export_candidates(inbox):
        return [inbox]
    return sorted(_batch_subfolders(inbox))


def read_batch(folder: Path) -> Batch:
    """List and check the export files of one batch folder."""
    if not folder.is_dir():
        raise BatchError(f"{folder}: no such folder. Pass the folder that holds the export files.")
    files: list[ExportFile] = []
    ignored: list[str] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = _shown_name(path.name)
        if path.name.startswith(".") or not path.is_file():
            ignored.append(name)
            continue
        stem, _, suffix = path.name.partition(".")
        entity = ENTITY_BY_NAME.get(stem.lower())
        suffix = suffix.lower()
        if entity is None:
            if suffix in FILE_FORMATS:
                raise BatchError(
                    f"{name}: {stem!r} is not an entity of the billing export; name "
                    f"files after one of: {', '.join(ENTITY_BY_NAME)}."
                )
            ignored.append(name)
            continue
        if suffix not in FILE_FORMATS:
            raise BatchError(
                f"{name}: only CSV (.csv) or Parquet (.parquet) files are read; "
                f"export {entity.name} as {entity.name}.csv."
            )
        if not _inside(path, folder):
            raise BatchError(
                f"{name} in {_shown_name(str(folder))} is a symbolic link to a file outside "
                "that folder; recoup reads only files inside the batch folder. Copy the file in "
                "instead. Nothing from this batch was loaded."
            )
        if entity.name in seen:
            raise BatchError(
                f"{folder}: both {seen[entity.name].name} and {path.name} hold {entity.name}; "
                "keep one file per entity."
            )
        seen[entity.name] = path
        files.append(_check_file(entity, path, suffix))  # type: ignore[arg-type]
    if not files:
        raise BatchError(f"{folder}: no billing export files (customers.csv, invoices.csv, ...).")
    order = {entity.name: position for position, entity in enumerate(ENTITIES)}
    files.sort(key=lambda file: order[file.entity.name])
    return Batch(folder=folder, files=tuple(files), ignored=tuple(ignored))


def _check_file(entity: Entity, path: Path, file_format: Literal["csv", "parquet"]) -> ExportFile:
    size = path.stat().st_size
    columns = _csv_header(path, size) if file_format == "csv" else _parquet_columns(path)
    _check_columns(entity, path.name, columns)
    return ExportFile(
        entity=entity,
        path=path,
        file_format=file_format,
        columns=columns,
        content_hash=_sha256(path),
        size_bytes=size,
    )


def _csv_header(path: Path, size: int) -> tuple[str, ...]:
    if size == 0:
        raise BatchError(
            f"{path.name} is empty (0 bytes); a CSV file needs at least its header row. "
            "Remove the file if there is nothing to load."
        )
    with path.open("rb") as handle:
        probe = handle.read(HEADER_PROBE_BYTES)
    if b"\x00" in probe:
        raise BatchError(f"{path.name} holds binary data, not CSV text; export it as UTF-8 CSV.")
    if b"\r" in probe and b"\n" not in probe:
        raise BatchError(
            f"{path.name} ends its lines with a bare carriage return (old Mac style); save it "
            "with LF or CRLF line endings."
        )
    first_line = probe.split(b"\n", 1)[0]
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchError(
            f"{path.name}: the header row is not UTF-8 text; save the file as UTF-8 CSV."
        ) from None
    header = next(csv.reader(io.StringIO(text)), [])
    return tuple(name.strip() for name in header)


def _parquet_columns(path: Path) -> tuple[str, ...]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as error:  # pyarrow raises several types for a broken file
        raise BatchError(
            f"{path.name} is not a readable Parquet file ({error}); export it again."
        ) from None
    return tuple(schema.names)


def _check_columns(entity: Entity, file_name: str, columns: Sequence[str]) -> None:
    if "" in columns:
        raise BatchError(
            f"{file_name}: the header has an empty column name (a trailing comma?); name every "
            "column or remove the extra delimiter."
        )
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise BatchError(f"{file_name}: the header repeats {', '.join(duplicated)}.")
    missing = [name for name in entity.required_names if name not in columns]
    unknown = [name for name in columns if name not in entity.column_names]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing required column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(unknown)}")
        raise BatchError(
            f"{file_name}: wrong header: {'; '.join(parts)}. The {entity.name} columns are: "
            f"{', '.join(entity.column_names)}. Nothing from this batch was loaded."
        )


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _natural_order(folder: Path) -> list[tuple[int, int | str]]:
    """batch-9 before batch-10; 2026-11-09 before 2026-11-10."""
    return [
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", folder.name)
        if part
    ]


def _shown_name(name: str) -> str:
    """A file name as a message shows it: quoted with escapes when it holds a line break or
    another character that is not printable, so it cannot forge lines in a message or a log."""
    return name if name.isprintable() else repr(name)


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path`, with every symbolic link followed, is inside `folder`."""
    return path.resolve().is_relative_to(folder.resolve())


def _batch_subfolders(path: Path) -> list[Path]:
    """The subfolders of `path` that hold export files; a subfolder that is a link to a
    folder elsewhere is refused before anything in it is read."""
    folders = []
    for child in path.iterdir():
        if not child.is_dir():
            continue
        if not _inside(child, path):
            raise BatchError(
                f"{_shown_name(child.name)} in {_shown_name(str(path))} is a symbolic link to a "
                "folder outside it; recoup loads only batch folders inside the folder it is "
                "given. Move or copy the batch in instead. Nothing was loaded."
            )
        if _export_candidates(child):
            folders.append(child)
    return folders


def _export_candidates(folder: Path) -> list[Path]:
    return [
        child
        for child in folder.iterdir()
        if child.is_file() and child.name.partition(".")[0].lower() in ENTITY_BY_NAME
    ]
