"""Peak resident memory of a process and all its descendants, sampled from /proc.

`TreeSampler` runs in a background thread: every `interval` seconds it finds the process tree
under `root` (by each process's parent pid in /proc/<pid>/stat) and adds up their VmRSS.
The peak of that sum is kept per phase (`sampler.phase("full run")`), so one sampler covers
the whole benchmark and each phase reports its own peak; every reading is kept with its time
(`readings`), so the peak of any window (a step of a run) can be found afterwards.

Each reading also holds the sum without the root itself (`children_only=True`): the bench
generates the data in its own process, which keeps that memory (2.4 GiB after generating a
million accounts) while the run it launched works; a run's own peak is its processes'. Pages
shared between processes (libraries, copy-on-write after fork) count once per process: the
sum is an upper bound.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")


def parent_pids(proc: Path = PROC) -> dict[int, int]:
    """Every live process id and its parent's (processes that end while read are skipped)."""
    parents: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, waiting = {root}, [root]
    while waiting:
        for child in children.get(waiting.pop(), ()):
            if child not in found:
                found.add(child)
                waiting.append(child)
    return found


def rss_bytes(pid: int, proc: Path = PROC) -> int:
    """The resident set of one process (0 when it has ended or is a zombie)."""
    try:
        status = (proc / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return 0


def split_tree_rss_bytes(root: int, proc: Path = PROC) -> tuple[int, int]:
    """The resident memory of `root` alone, and of its descendants added up."""
    others = descendants(root, parent_pids(proc)) - {root}
    return rss_bytes(root, proc), sum(rss_bytes(pid, proc) for pid in others)


def tree_rss_bytes(root: int, proc: Path = PROC) -> int:
    """The resident memory of `root` and its descendants, added up."""
    return sum(split_tree_rss_bytes(root, proc))


class TreeSampler:
    """Samples the tree under `root` (default: this process) until `stop()`."""

    def __init__(self, root: int | None = None, interval: float = 0.2, proc: Path = PROC) -> None:
        self.root = root if root is not None else os.getpid()
        self.interval = interval
        self.proc = proc
        self.peaks: dict[str, int] = {}
        self.children_peaks: dict[str, int] = {}  # the same without the root process
        self.overall = 0
        # (time.time(), bytes of the tree, bytes of the root's descendants), in order
        self.readings: list[tuple[float, int, int]] = []
        self._current = "start"
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()
        self.sample()  # the last word, so a short phase is never left at zero

    def sample(self) -> int:
        own, children = split_tree_rss_bytes(self.root, self.proc)
        total = own + children
        taken = time.time()
        with self._lock:
            self.readings.append((taken, total, children))
            self.peaks[self._current] = max(self.peaks.get(self._current, 0), total)
            self.children_peaks[self._current] = max(
                self.children_peaks.get(self._current, 0), children
            )
            self.overall = max(self.overall, total)
        return total

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the samples taken meanwhile to `name` (phases do not nest)."""
        self.sample()  # close the previous phase with a reading
        with self._lock:
            previous, self._current = self._current, name
        try:
            yield
        finally:
            self.sample()
            with self._lock:
                self._current = previous

    def peak(self, name: str, *, children_only: bool = False) -> int:
        with self._lock:
            return (self.children_peaks if children_only else self.peaks).get(name, 0)

    def peak_between(self, start: float, end: float, *, children_only: bool = False) -> int:
        """The highest reading from `start` to `end` (time.time() seconds); for a window
        shorter than the interval, the reading nearest to it."""
        column = 2 if children_only else 1
        with self._lock:
            readings = list(self.readings)
        inside = [reading[column] for reading in readings if start <= reading[0] <= end]
        if inside:
            return max(inside)
        if not readings:
            return 0
        middle = (start + end) / 2
        return min(readings, key=lambda reading: abs(reading[0] - middle))[column]

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.sample()
