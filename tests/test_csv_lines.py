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


CHUNKED_CASES = [
    b"a,b\n1,2\n3,4\n",
    b"a,b\r\n1,2\r\n\r\n3,4",
    b"\xef\xbb\xbfa,b\n1,2\n",
    b"\xef\xbb\xbf\n",
    b'a,b\n1,"x\ny"\n2,"p\r\nq\r\nr"\n3,4\n',
    b'a,b\n1,"say ""hi""\nthere"\n2,3\n',
    b'"a",b\n"1","2"\n',
    b'a,b\n1,x"y\n2,3\n',  # a quote inside an unquoted field: not well placed
    b'a,b\n1,"x"y\n',  # a closing quote before neither delimiter nor line break
    b'a,b\n1,"never closed\n2,3\n',
    b'a,b\n1,2\n"',
]


@pytest.mark.parametrize("content", CHUNKED_CASES)
@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 7])
def test_reading_in_chunks_changes_nothing(
    tmp_path: Path, content: bytes, chunk_bytes: int
) -> None:
    """The file is read a window at a time; a line break, a quote or the bytes around them
    falling on a window's edge give the answer of one read of the whole file."""
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    whole = record_lines(path, chunk_bytes=len(content))
    chunked = record_lines(path, chunk_bytes=chunk_bytes)
    assert chunked.first_line.tolist() == whole.first_line.tolist()
    assert chunked.blank.tolist() == whole.blank.tolist()
    assert chunked.quotes_well_placed == whole.quotes_well_placed
    assert chunked.unterminated_quote_line == whole.unterminated_quote_line


@pytest.mark.parametrize(
    ("content", "well_placed", "unterminated"),
    [
        (b'"a",b\n"1","say ""hi"""\n', True, None),
        (b'a,b\n1,x"y"\n', False, None),
        (b'a,b\n1,"x"y\n', False, None),
        (b'a,b\n1,2\n3,"open\n4,5\n', True, 3),
    ],
)
def test_quotes_are_judged_across_chunks(
    tmp_path: Path, content: bytes, well_placed: bool, unterminated: int | None
) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    lines = record_lines(path, chunk_bytes=2)
    assert lines.quotes_well_placed is well_placed
    assert lines.unterminated_quote_line == unterminated
