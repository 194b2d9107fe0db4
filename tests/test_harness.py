"""The test harness's own promise: a process a test starts never outlives the run,
however the run ends (`conftest.outlive_no_run`), so its servers need no lifetime
shorter than the run's (`conftest.LIFETIME_S`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import LIFETIME_S

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for the test run: it starts `timeout LIFETIME_S sleep 600` as `start` starts
# a server, prints the pids, and waits to be killed.
RUN = f"""
import subprocess, sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.conftest import outlive_no_run
p = subprocess.Popen(["timeout", "{LIFETIME_S}", "sleep", "600"], preexec_fn=outlive_no_run())
time.sleep(0.5)
print(p.pid, open(f"/proc/{{p.pid}}/task/{{p.pid}}/children").read().strip(), flush=True)
time.sleep(600)
"""


def gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # dead, waiting for its parent to reap it
            return True
        time.sleep(0.05)
    return False


def test_a_server_dies_with_a_run_that_is_killed() -> None:
    run = subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        wrapper, server = (int(pid) for pid in run.stdout.readline().split())
        assert not gone(server, within=0.2)  # it runs while the run does
        os.kill(run.pid, signal.SIGKILL)  # no teardown, no atexit: only the kernel can tell the child
        run.wait()
        assert gone(wrapper) and gone(server)
    finally:
        run.kill()
        run.wait()
