"""Files recoup hands over: whole or not at all, owner-only, and safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from flows.lib.output_files import csv_bytes, safe_cell, write_atomically

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('=HYPERLINK("http://evil.example","Pay")', '\'=HYPERLINK("http://evil.example","Pay")',
                     id="a formula"),
        pytest.param('+cmd|" /C calc"!A0', '\'+cmd|" /C calc"!A0', id="a DDE command"),
        pytest.param("@SUM(A1:A9)", "'@SUM(A1:A9)", id="an at-sign function"),
        pytest.param("-2+3+cmd|x", "'-2+3+cmd|x", id="a sum that hides a command"),
        pytest.param("\tTAB", "'\tTAB", id="a leading tab"),
        pytest.param("+1 (512) 555-0100", "+1 (512) 555-0100", id="a phone number stays as it is"),
        pytest.param("-12.50", "-12.50", id="a negative amount stays as it is"),
        pytest.param("Ann O'Brien", "Ann O'Brien", id="ordinary text"),
        pytest.param(None, "", id="nothing"),
        pytest.param(42, "42", id="a number"),
    ],
)  # fmt: skip
def test_safe_cell(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


def test_csv_bytes_defuses_every_cell_and_reads_back() -> None:
    data = csv_bytes(("name", "phone"), [("=1+1", "+15125550100"), ('a "quoted", name', None)])
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    assert rows == [["name", "phone"], ["'=1+1", "+15125550100"], ['a "quoted", name', ""]]


def test_write_atomically_leaves_one_owner_only_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "manifest.csv"
    write_atomically(target, b"first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["manifest.csv"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "queue.csv"
    write_atomically(target, b"old")

    def broken_replace(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["queue.csv"]
