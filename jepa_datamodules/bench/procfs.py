"""What the loader processes use, read from ``/proc`` (Linux): memory as PSS and CPU time.

PSS (``/proc/<pid>/smaps_rollup``) counts pages the loader workers share with the main
process once, so main + workers sum to what the loader really holds. The loader's processes
are this process and its children, less any the caller names (the sources bench's S3 server).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

# Memory is sampled this often (seconds), and at the start and end of the timed window.
# Reading smaps_rollup walks the page tables: ~20 ms of CPU per loader process here, so
# sampling much faster would itself load the 2-core machines this runs on.
PSS_INTERVAL_S = 1.0


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the name (field 3 on), or None once the process ended.

    The name (field 2) may hold spaces and parentheses, so the split starts after its last ")".
    """
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:  # the process ended while we looked
        return None


def _child_pids(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None and int(fields[1]) == parent:  # field 4: the parent pid
            children.append(int(entry))
    return children


def process_pss_kb(pid: int) -> dict[str, int] | None:
    """``Pss``, ``Pss_Anon``, ``Pss_File`` and ``Pss_Shmem`` of a process in kB, or None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key.startswith("Pss"):
            values[key] = int(rest.split()[0])
    return values or None


class PssSampler:
    """Samples the summed PSS of this process and its children every ``interval`` seconds.

    ``peak`` is the largest total seen, in MB, with its breakdown (anon, file, shmem) and
    the number of processes counted; None where ``/proc/<pid>/smaps_rollup`` is missing
    (non-Linux, kernels before 4.14).
    """

    def __init__(self, interval: float = PSS_INTERVAL_S, exclude: frozenset[int] = frozenset(),
                 watch: Callable[[], Any] | None = None):
        self.interval = interval
        self.exclude = exclude  # children that are not part of the loader (the sources bench's S3 server)
        self.watch = watch  # called with every sample (the sources bench: a cache folder's size)
        self.peak: dict[str, Any] | None = None
        self.sampler_cpu_s = 0.0  # CPU the background thread spent sampling (subtracted from timings)
        self._lock = threading.Lock()  # the main thread samples too, at the edges of the timed window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-sampler", daemon=True)

    def __enter__(self) -> "PssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            start = time.thread_time()
            self.sample()
            self.sampler_cpu_s += time.thread_time() - start

    def sample(self) -> None:
        if self.watch is not None:
            self.watch()
        totals: dict[str, int] = {}
        processes = 0
        for pid in loader_pids(self.exclude):
            values = process_pss_kb(pid)
            if values is None:
                continue
            processes += 1
            for key, value in values.items():
                totals[key] = totals.get(key, 0) + value
        if "Pss" not in totals:
            return
        with self._lock:
            if self.peak is None or totals["Pss"] / 1024 > self.peak["total_mb"]:
                self.peak = {"total_mb": totals["Pss"] / 1024, "anon_mb": totals.get("Pss_Anon", 0) / 1024,
                             "file_mb": totals.get("Pss_File", 0) / 1024,
                             "shmem_mb": totals.get("Pss_Shmem", 0) / 1024, "processes": processes}


def loader_pids(exclude: frozenset[int] = frozenset()) -> list[int]:
    """This process and its children (the loader's workers), less ``exclude``."""
    main = os.getpid()
    return [pid for pid in [main, *_child_pids(main)] if pid not in exclude]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (those still running)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (neither ended nor a zombie waiting to be reaped)."""
    return [pid for pid in pids if (fields := _stat(pid)) is not None and fields[0] not in ("Z", "X")]
