"""Two ingests at once: the second waits for the first or refuses, never interleaves."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flows.lib.run_lock import LockBusy, current_holder, run_lock
from flows.lib.warehouse import open_warehouse, scalar
from tests.builders import base_batch, row

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]

HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from flows.lib.run_lock import run_lock
    with run_lock(Path(sys.argv[1]), "hold-test", 0):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)

INGEST = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from flows.lib.loader import load_batch
    from flows.lib.run_lock import run_lock
    from flows.lib.warehouse import open_warehouse
    home, folder = Path(sys.argv[1]), Path(sys.argv[2])
    with run_lock(home / "state", "ingest", 60):
        connection = open_warehouse(home / "warehouse.duckdb")
        outcome = load_batch(connection, folder)
        connection.close()
    print("loaded" if outcome.changed else "unchanged", flush=True)
    """
)


def start(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_caller_is_refused_with_the_holders_name(tmp_path: Path) -> None:
    holder = start(HOLD_LOCK, str(tmp_path), "5")
    assert holder.stdout.readline().strip() == "held"
    try:
        assert current_holder(tmp_path)["command"] == "hold-test"
        started = time.monotonic()
        with pytest.raises(LockBusy) as refused, run_lock(tmp_path, "ingest", wait_seconds=0.5):
            pass
        assert time.monotonic() - started >= 0.5
        message = str(refused.value)
        assert f"`recoup hold-test` (pid {holder.pid}" in message
        assert "Run again when it has finished" in message
    finally:
        holder.kill()
        holder.wait()


def test_a_waiting_caller_gets_the_lock_when_the_holder_ends(tmp_path: Path) -> None:
    holder = start(HOLD_LOCK, str(tmp_path), "1.5")
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with run_lock(tmp_path, "ingest", wait_seconds=20):
        assert time.monotonic() - started >= 1.0  # it waited for the holder's 1.5 s
        assert current_holder(tmp_path) is not None
    assert current_holder(tmp_path) is None
    assert holder.wait(timeout=10) == 0


def test_a_crashed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = start(HOLD_LOCK, str(tmp_path), "30")
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.wait()
    with run_lock(tmp_path, "ingest", wait_seconds=0):
        pass


def test_two_ingests_of_one_batch_at_once_load_it_exactly_once(tmp_path: Path) -> None:
    folder = base_batch(
        tmp_path / "b1", invoices=[row("invoices", invoice_id=f"I{n}") for n in range(200)]
    )
    home = tmp_path / "home"
    workers = [start(INGEST, str(home), str(folder)) for _ in range(2)]
    results = sorted(worker.communicate(timeout=120)[0].strip() for worker in workers)
    assert [worker.returncode for worker in workers] == [0, 0]
    assert results == ["loaded", "unchanged"]
    connection = open_warehouse(home / "warehouse.duckdb", read_only=True)
    assert scalar(connection, "select count(*) from raw.load_batches") == 1
    assert scalar(connection, "select count(*) from raw.invoices") == 200
    connection.close()
