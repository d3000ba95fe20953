"""A batch of files into one folder: each whole or not at all, private, one flush per batch."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flows.lib import file_batches
from flows.lib.file_batches import write_batch_atomically

pytestmark = pytest.mark.unit


def test_every_file_is_written_private_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    folder = tmp_path / "outbox" / "2026-11-23"  # created on first use
    files = [(f"{n:032x}.eml", f"message {n}".encode()) for n in range(5)]

    failed = write_batch_atomically(folder, files)

    assert failed == {}
    assert sorted(p.name for p in folder.iterdir()) == sorted(name for name, _ in files)
    for name, data in files:
        assert (folder / name).read_bytes() == data
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_name_again_replaces_the_file_and_the_later_data_wins(tmp_path: Path) -> None:
    write_batch_atomically(tmp_path, [("a.eml", b"old")])

    write_batch_atomically(tmp_path, [("a.eml", b"first"), ("a.eml", b"second")])

    assert [p.name for p in tmp_path.iterdir()] == ["a.eml"]  # iterdir lists dotfiles too
    assert (tmp_path / "a.eml").read_bytes() == b"second"


def test_a_file_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    (tmp_path / "taken.eml").mkdir()  # a folder where the file should go: the rename fails
    (tmp_path / "taken.eml" / "inside").write_bytes(b"")

    failed = write_batch_atomically(tmp_path, [("taken.eml", b"x"), ("fine.eml", b"y")])

    assert list(failed) == ["taken.eml"] and isinstance(failed["taken.eml"], OSError)
    assert (tmp_path / "fine.eml").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.eml", "taken.eml"]


def test_the_folder_is_flushed_once_and_every_file_before_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_replace, real_fsync = os.replace, os.fsync

    def fsync(descriptor: int) -> None:
        target = os.readlink(f"/proc/self/fd/{descriptor}")
        events.append("flush folder" if target == str(tmp_path) else "flush file")
        real_fsync(descriptor)

    def replace(source: str, target: os.PathLike[str]) -> None:
        events.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(file_batches.os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)  # output_files.fsync_folder uses it too

    write_batch_atomically(tmp_path, [(f"{n}.pdf", b"%PDF") for n in range(3)])

    assert events == ["flush file"] * 3 + ["rename"] * 3 + ["flush folder"]
