"""Python code execution for the `code_interpreter` tool, in a separate process.

Each run gets a fresh temporary working directory (removed afterwards), an empty
environment (no variables of the server's), and resource limits set by `prlimit`: CPU seconds,
address space, file size (which also caps its output, written to files), open
files and processes, plus a wall-clock timeout. Where unprivileged user namespaces
work (`unshare -rnpf`), it also gets a network namespace with no interfaces (no
network at all) and a PID namespace, so every process it starts dies with it, even
one that left its session. Output is cut at `MAX_OUTPUT` characters.

This is process isolation, not a VM, and it has no filesystem isolation yet: the
code runs as the server's user and can read (and write) what that user can. So
code execution is off unless config turns it on (`[tools] code_execution = true`);
the hardening issue owns the full sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
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
def _unshare() -> tuple[str, ...]:
    """`unshare` with new user, network and PID namespaces (no network; every process
    the code starts dies with it), when this machine allows that; else nothing."""
    tool = shutil.which("unshare")
    if tool is None:
        return ()
    cmd = (tool, "-rnpf", "--kill-child")
    ok = subprocess.run([*cmd, "true"], capture_output=True, check=False).returncode == 0
    return cmd if ok else ()


def _user_tasks() -> int:
    """Threads of this user: RLIMIT_NPROC counts them all, not only the sandbox's."""
    uid, n = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    n += len(os.listdir(f"/proc/{entry.name}/task"))
    return n


def _limits(limits: Limits) -> tuple[str, ...]:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise ToolFailed("the sandbox needs prlimit (util-linux), which this server lacks")
    mb = 1024 * 1024
    nproc = _user_tasks() + limits.processes
    return (prlimit, f"--cpu={limits.cpu_s}", f"--as={limits.memory_mb * mb}", f"--fsize={limits.file_mb * mb}",
            "--nofile=64", "--core=0", f"--nproc={nproc}")  # fmt: skip


def run_code(code: str, limits: Limits = Limits()) -> Outcome:
    """Run `code` with `python -I` under the limits; blocks until it ends or is killed.
    Its output goes to files in its own directory (capped by the file-size limit),
    and the first MAX_OUTPUT characters are read back."""
    isolate = _unshare()
    with tempfile.TemporaryDirectory(prefix="ponder-sandbox-") as work:
        script = os.path.join(work, "main.py")
        with open(script, "w") as f:
            f.write(code)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}  # fmt: skip
        out_path, err_path = os.path.join(work, ".stdout"), os.path.join(work, ".stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [*_limits(limits), *isolate, sys.executable, "-I", "-B", script], cwd=work, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
            try:
                exit_code: int | None = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                exit_code = None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # what is left of its session (all of its namespace)
                proc.wait()
        return Outcome(_read(out_path), _read(err_path), exit_code, bool(isolate))


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return _cut(f.read(MAX_OUTPUT * 4 + 1))
    except OSError:  # the code removed it
        return ""


def _cut(data: bytes) -> str:
    text = data.decode("utf-8", "replace")[: MAX_OUTPUT + 1]
    return text if len(text) <= MAX_OUTPUT else text[:MAX_OUTPUT] + f"\n[... cut at {MAX_OUTPUT} characters]"


SPEC = Tool(
    NAME,
    "Run a Python 3 program in a sandbox and return what it prints. Use it for calculations and data work. "
    "Each program runs on its own, with nothing from earlier runs: assign every number it uses from the "
    "question, then print() the result. No network.",
    {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "the Python program"}},
        "required": ["code"],
    },
)


def hosted(limits: Limits = Limits()) -> Hosted:
    async def call(args: dict[str, Any]) -> Result:
        code = textwrap.dedent(string_arg(args, "code")).strip("\n")  # models indent code inside JSON
        r = await asyncio.to_thread(run_code, code, limits)
        logs = r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
        data = {"code": code, "outputs": [{"type": "logs", "logs": logs}], "exit_code": r.exit_code}
        if r.exit_code is None:
            raise ToolFailed(f"the code ran past {limits.wall_s:g}s and was stopped\n{logs}".strip())
        if r.exit_code != 0:
            return Result(f"exit code {r.exit_code}\n{logs}".strip(), data)
        return Result(logs.strip() or "(the code printed nothing: print() what you need)", data)

    return Hosted("code_interpreter", SPEC, call, timeout_s=limits.wall_s + 5)
