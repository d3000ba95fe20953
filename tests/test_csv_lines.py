"""Line numbers of CSV records, as a text editor counts them (header = line 1)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from flows.lib.csv_lines import record_lines

pytestmark = pytest.mark.unit


def python_csv_lines(path: Path) -> list[int]:
    """Reference: the first line of each non-empty data record, by Python's csv module."""
    lines, handle = [], path.open(newline="", encoding="utf-8-sig")
    with handle:
        reader = csv.reader(handle)
        next(reader)
        start = reader.line_num + 1
        for record in reader:
            if record:
                lines.append(start)
            start = reader.line_num + 1
    return lines


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"a,b\n1,2\n3,4\n", id="plain"),
        pytest.param(b"a,b\r\n1,2\r\n3,4", id="crlf, no final line break"),
        pytest.param(b"\xef\xbb\xbfa,b\n1,2\n", id="byte order mark"),
        pytest.param(b'a,b\n1,"x\ny"\n2,"p\r\nq\r\nr"\n3,4\n', id="quoted line breaks"),
        pytest.param(b'a,b\n1,"say ""hi""\nthere"\n2,3\n', id="escaped quotes and a line break"),
        pytest.param(b"a,b\n1,2\n\n3,4\n\r\n5,6\n", id="blank lines"),
    ],
)
def test_record_lines_match_pythons_csv_module(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    assert record_lines(path).data_record_lines.tolist() == python_csv_lines(path)


def test_an_empty_file_has_no_data_records(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"")
    assert record_lines(path).data_record_lines.tolist() == []
