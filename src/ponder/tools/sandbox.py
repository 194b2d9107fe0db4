"""Python code execution for the `code_interpreter` tool, in a separate process.

Each run gets a fresh temporary working directory (removed afterwards), an empty
environment (no keys, no data dir in sight), and resource limits: CPU seconds,
address space, file size, open files and processes, plus a wall-clock timeout
that kills the whole process group. Where unprivileged user namespaces work
(`unshare -rn`), the process also gets a network namespace of its own, with no
interfaces: no network at all. Output is cut at `MAX_OUTPUT` bytes.

This is process isolation, not a VM. Code execution is off unless config turns it
on (`[tools] code_execution = true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from ponder.tools.base import Hosted, Result, ToolFailed, string_arg
from ponder.types import Tool

NAME = "python"
MAX_OUTPUT = 16_000


@dataclass(frozen=True)
class Limits:
    wall_s: float = 20.0
    cpu_s: int = 10
    memory_mb: int = 512
    file_mb: int = 16
    processes: int = 16  # beyond those the user already runs: a fork bomb stops here


@dataclass(frozen=True)
class Outcome:
    stdout: str
    stderr: str
    exit_code: int | None  # None: killed at the wall-clock limit
    network_isolated: bool


@functools.cache
def _unshare() -> list[str]:
    """`unshare -rn` when this machine allows it, else nothing (no network isolation)."""
    tool = shutil.which("unshare")
    if tool is None:
        return []
    ok = subprocess.run([tool, "-rn", "true"], capture_output=True, check=False).returncode == 0
    return [tool, "-rn"] if ok else []


def _limit(limits: Limits) -> None:  # runs in the child, before exec
    os.setsid()
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    running = len([p for p in os.listdir("/proc") if p.isdigit()])  # NPROC counts the user's every process
    resource.setrlimit(resource.RLIMIT_NPROC, (running + limits.processes, running + limits.processes))


def run_code(code: str, limits: Limits = Limits()) -> Outcome:
    """Run `code` with `python -I` under the limits; blocks until it ends or is killed."""
    isolate = _unshare()
    with tempfile.TemporaryDirectory(prefix="ponder-sandbox-") as work:
        script = os.path.join(work, "main.py")
        with open(script, "w") as f:
            f.write(code)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}  # fmt: skip
        proc = subprocess.Popen(
            [*isolate, sys.executable, "-I", "-B", script], cwd=work, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=functools.partial(_limit, limits),
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=limits.wall_s)
            code_ = proc.returncode
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            code_ = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running
    return Outcome(_cut(out), _cut(err), code_, bool(isolate))


def _cut(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + f"\n[... cut at {MAX_OUTPUT} characters]"


SPEC = Tool(
    NAME,
    "Run Python 3 code in a sandbox and return what it prints. Use it for calculations and data work; print() "
    "the results you need. No network, no files outside its own temporary folder.",
    {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python program"}},
        "required": ["code"],
    },
)


def hosted(limits: Limits = Limits()) -> Hosted:
    async def call(args: dict[str, Any]) -> Result:
        code = string_arg(args, "code")
        r = await asyncio.to_thread(run_code, code, limits)
        logs = r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
        data = {"code": code, "outputs": [{"type": "logs", "logs": logs}], "exit_code": r.exit_code}
        if r.exit_code is None:
            raise ToolFailed(f"the code ran past {limits.wall_s:g}s and was stopped\n{logs}".strip())
        if r.exit_code != 0:
            return Result(f"exit code {r.exit_code}\n{logs}".strip(), data)
        return Result(logs.strip() or "(the code printed nothing: print() what you need)", data)

    return Hosted("code_interpreter", SPEC, call, timeout_s=limits.wall_s + 5)
