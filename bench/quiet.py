"""Measure only on a quiet machine: llama.cpp's threads share two cores with nothing.

Two processes that each run llama.cpp's OpenMP threads on the same two cores wait
on each other at every op barrier, and rates drop by orders of magnitude, so every
timed step of a benchmark goes through `measured`, which waits for other processes
to leave the CPUs alone and measures again when they did not.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
MAX_FOREIGN = 0.05  # share of all CPUs that other processes may use during a measurement
MAX_ATTEMPTS = 5
QUIET_PROBE_S, QUIET_SLEEP_S, QUIET_WAIT_S = 1.0, 1.0, 3600.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu_times() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return busy / CLK_TCK, (float(own[11]) + float(own[12])) / CLK_TCK


def foreign_share(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run `fn`; return its result and the share of all CPUs other processes used meanwhile."""
    (busy0, own0), t0 = cpu_times(), time.perf_counter()
    res = fn()
    (busy1, own1), t1 = cpu_times(), time.perf_counter()
    return res, max(0.0, (busy1 - busy0) - (own1 - own0)) / ((t1 - t0) * CPUS)


def wait_quiet() -> None:
    """Sleep until other processes leave the CPUs alone (or QUIET_WAIT_S passes)."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while (share := foreign_share(lambda: time.sleep(QUIET_PROBE_S))[1]) > MAX_FOREIGN:
        if time.monotonic() > deadline:
            log(f"    gave up waiting for a quiet machine (others use {share:.0%} of the CPUs)")
            return
        waited = time.monotonic() - deadline + QUIET_WAIT_S
        if waited // 60 > (waited - QUIET_PROBE_S - QUIET_SLEEP_S) // 60:  # about once a minute
            log(f"    other processes use {share:.0%} of the CPUs; waiting ({waited / 60:.0f} min so far)")
        time.sleep(QUIET_SLEEP_S)


def measured(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `fn` on a quiet machine, again if other processes took a share of the CPUs meanwhile.

    Two processes that each run llama.cpp's OpenMP threads on the same two cores wait
    on each other at every op barrier, and rates drop by orders of magnitude; a
    measurement like that says nothing about batching."""
    for _ in range(MAX_ATTEMPTS):
        wait_quiet()
        res, foreign = foreign_share(fn)
        res["foreign_cpu"] = round(foreign, 3)
        if foreign <= MAX_FOREIGN:
            return res
        log(f"    other processes used {foreign:.0%} of the CPUs during it; measuring again")
    res["contended"] = True
    return res
