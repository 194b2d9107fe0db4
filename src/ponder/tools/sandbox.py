"""Python code execution for the `code_interpreter` tool, in a sandboxed process.

Each run is a new process tree in namespaces of its own, made by `unshare` (util-linux;
no privileges needed where unprivileged user namespaces work): a user namespace; a
network namespace with no interfaces, so no network at all; a PID namespace, so every
process the code starts dies with it, even one that left its session; IPC and UTS
namespaces; and a mount namespace. In that one a small bootstrap (`_INIT`, run by this
same interpreter) builds a new root on a tmpfs:

- the system directories (/usr, /bin, /lib, ...) and this Python (its installation and
  its environment, so the server's packages, numpy among them, import), read-only;
- /etc with only ld.so.cache and localtime; /dev with null, zero, full, random, urandom;
- a fresh /proc, read-only, that shows only the sandbox's own processes;
- /tmp, the working directory and the one place it may write: a tmpfs of
  `Limits.disk_mb`, gone when the run ends.

It pivots into that root and detaches the host's, so no path leads back to the server's
files: not $HOME, not the data dir with the database and its keys, not the server's
temporary files. Then the code loses every capability: it enters a user namespace in
which its user has no id (so it can remount nothing and make no namespace of its own);
a server run as root first makes it `nobody`, since root's process limit is never
enforced. It runs `python -I` with an empty environment. `prlimit` sets CPU seconds,
address space, file size (which also caps its output, written to files outside the
sandbox), open files and processes; a wall-clock timeout kills what is left. Output is
cut at `MAX_OUTPUT` characters.

Where this machine cannot build all that (no user namespaces, as in many containers),
the tool refuses to run code and says why (ToolFailed): it never runs code unconfined.
It is not a VM: the kernel is shared and system calls are not filtered. Code execution
is off unless config turns it on (`[tools] code_execution = true`).
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
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from ponder.tools.base import Hosted, Result, ToolFailed, string_arg
from ponder.types import Tool

NAME = "python"
MAX_OUTPUT = 16_000
NOBODY = 65534  # the user the code runs as when the server runs as root


@dataclass(frozen=True)
class Limits:
    wall_s: float = 20.0
    cpu_s: int = 10
    memory_mb: int = 512
    file_mb: int = 16
    disk_mb: int = 64  # the working directory (a tmpfs, so this is memory too)
    processes: int = 16  # beyond those its user already runs: a fork bomb stops here


@dataclass(frozen=True)
class Outcome:
    stdout: str
    stderr: str
    exit_code: int | None  # None: killed at the wall-clock limit


# The bootstrap, run by this interpreter with `-I -S` in the new namespaces, on the host's
# filesystem still, with every capability over them. argv: the empty directory that becomes
# the root, the code's file, the working directory's size in MiB, the uid the code runs as
# ("" to keep its own), the interpreter, and the directories to show. It ends as the code
# does (a signal included), or with exit code 125 where it cannot build the sandbox.
_INIT = r"""
import ctypes, os, re, signal, sys

root, code, disk_mb, user, python, *shown = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, DETACH = 1, 2, 4, 8, 32, 4096, 16384, 2
CLONE_NEWUSER, PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 0x10000000, 1, 38
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}.get(os.uname().machine, -1)


def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def mount(source, target, fstype, flags, data=None):
    b = lambda s: s.encode() if s else None
    check(libc.mount(b(source), b(target), b(fstype), flags, b(data)), f"mount {target}")


def read_only(target, below=True, flags=NOSUID | NODEV):
    # the mount at target and those below it; a flag the host set (noexec) may not be dropped
    with open("/proc/self/mountinfo") as f:
        points = [re.sub(r"\\(\d{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in f]
    for point in points:
        if point == target or below and point.startswith(target + "/"):
            keep = os.statvfs(point).f_flag & NOEXEC
            mount(None, point, None, REMOUNT | BIND | RDONLY | flags | keep)


def copy(source, target):
    with open(source, "rb") as src, open(target, "wb") as dst:
        dst.write(src.read())


# 0. The first child is PID 1 of the new PID namespace; this process, outside it, ends as it
#    does, which is once every process in it is gone. SIGTERM here ends them all.
child = os.fork()
if child:
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    status = os.waitpid(child, 0)[1]
    if os.WIFSIGNALED(status):
        if os.WTERMSIG(status) not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))
try:
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "die with the parent")
    os.umask(0o022)
    # 1. An empty root on a small tmpfs; in it the working directory, the one place the code
    #    may write (first: a Python installed under the host's /tmp is shown inside it), and
    #    the host's directories, read-only.
    mount("tmpfs", root, "tmpfs", NOSUID | NODEV, "size=4m,mode=755")
    os.mkdir(root + "/tmp")
    mount("tmpfs", root + "/tmp", "tmpfs", NOSUID | NODEV, f"size={disk_mb}m,mode=1777")
    for path in shown:
        if os.path.islink(path):  # /bin -> usr/bin
            os.symlink(os.readlink(path), root + path)
        else:
            os.makedirs(root + path, exist_ok=True)
            mount(path, root + path, None, BIND | REC)
            read_only(root + path)
    # 2. Two files of /etc; devices that hold nothing of the host's; its own /proc, read-only.
    os.mkdir(root + "/etc")
    for name in ("ld.so.cache", "localtime"):
        if os.path.exists("/etc/" + name):
            copy("/etc/" + name, root + "/etc/" + name)
    os.mkdir(root + "/dev")
    for name in ("null", "zero", "full", "random", "urandom"):
        open(root + "/dev/" + name, "w").close()
        mount("/dev/" + name, root + "/dev/" + name, None, BIND)
        read_only(root + "/dev/" + name, flags=NOSUID)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("shm", "/tmp")):
        os.symlink(target, root + "/dev/" + name)
    os.mkdir(root + "/proc")
    try:
        mount("proc", root + "/proc", "proc", NOSUID | NODEV | NOEXEC)
        read_only(root + "/proc")
    except OSError:  # a container that hides parts of its /proc allows no new one: the code goes without
        pass
    # 3. The code, in the working directory.
    copy(code, root + "/tmp/main.py")
    read_only(root, below=False)
    # 4. That root becomes the only one: the host's is detached, so no path leads back to it.
    os.chdir(root)
    check(libc.syscall(PIVOT_ROOT, b".", b"."), "pivot_root")
    check(libc.umount2(b".", DETACH), "detach the host's root")
    os.chdir("/tmp")
    # 5. The code holds no capabilities: it enters a user namespace in which its user has no
    #    id, so it can make no namespace of its own. Run by root, it first becomes `user`
    #    (root's process limit is not enforced); where that namespace fails, the code's would too.
    if user:
        os.setgroups([])
        os.setresgid(int(user), int(user), int(user))
        os.setresuid(int(user), int(user), int(user))
        libc.unshare(CLONE_NEWUSER)
    else:
        check(libc.unshare(CLONE_NEWUSER), "unshare")
    check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "die with the parent")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no new privileges")
except BaseException as e:
    print(f"cannot build the sandbox: {e}", file=sys.stderr)
    os._exit(125)
os.execv(python, [python, "-I", "-B", "/tmp/main.py"])
"""


def _interpreter() -> str:
    """This Python as the sandbox sees it: its directory resolved (that is what the sandbox
    shows), its name kept, so a virtual environment's interpreter still finds its packages."""
    return os.path.join(os.path.realpath(os.path.dirname(sys.executable)), os.path.basename(sys.executable))


def _shown() -> list[str]:
    """The host directories the sandbox sees, read-only: the system's, and this Python's
    installation and environment (none inside another)."""
    system = [p for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64") if os.path.lexists(p)]
    python = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)}
    python |= {os.path.dirname(_interpreter()), os.path.dirname(os.path.realpath(sys.executable))}
    shown = system.copy()
    for path in sorted(python, key=len):  # a directory before those inside it
        if not any(_inside(path, other) for other in shown):
            shown.append(path)
    return shown


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


@functools.cache
def unavailable() -> str | None:
    """Why this machine cannot run code in the sandbox, or None when it can. The first
    call builds one and runs a line in it."""
    missing = [tool for tool in ("prlimit", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"the sandbox needs {' and '.join(missing)} (util-linux), which this server lacks"
    home = os.path.realpath(os.path.expanduser("~"))
    if any(_inside(home, path) for path in _shown()):
        return f"this Python lives in a directory that holds the server's home ({home}), which the sandbox would show"
    probe = _run("print('contained')", Limits())
    if probe.stdout != "contained\n":
        why = (probe.stderr.strip().splitlines() or [f"exit code {probe.exit_code}"])[-1]
        return f"this machine cannot isolate code (it needs Linux namespaces, unprivileged ones unless root): {why}"
    return None


def run_code(code: str, limits: Limits = Limits()) -> Outcome:
    """Run `code` with `python -I` in the sandbox under the limits; blocks until it ends
    or is killed. ToolFailed where this machine cannot build the sandbox."""
    why = unavailable()
    if why is not None:
        raise ToolFailed(f"code execution is unavailable: {why}")
    return _run(code, limits)


def _run(code: str, limits: Limits) -> Outcome:
    """run_code without the check. The code's output goes to files outside the sandbox
    (capped by the file-size limit), and the first MAX_OUTPUT characters are read back."""
    with tempfile.TemporaryDirectory(prefix="ponder-sandbox-") as work:
        root, script = os.path.join(work, "root"), os.path.join(work, "main.py")
        os.mkdir(root)
        with open(script, "w") as f:
            f.write(code)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}  # fmt: skip
        as_root = os.geteuid() == 0  # then it needs no user namespace to build the sandbox, and the code runs as NOBODY
        uid = NOBODY if as_root else os.getuid()
        unshare = (shutil.which("unshare") or "unshare", "-npmiu" if as_root else "-rnpmiu")
        init = (sys.executable, "-I", "-S", "-B", "-c", _INIT, root, script, str(limits.disk_mb),
                str(uid) if as_root else "", _interpreter(), *_shown())  # fmt: skip
        out_path, err_path = os.path.join(work, ".stdout"), os.path.join(work, ".stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [*_limits(limits, uid), *unshare, *init], cwd=work, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
            try:
                exit_code: int | None = proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                exit_code = None
                proc.terminate()  # the bootstrap ends the PID namespace, and then itself
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # whatever is left (its PID 1 dies with it)
                proc.wait()
        return Outcome(_read(out_path), _read(err_path), exit_code)


def _user_tasks(uid: int) -> int:
    """Threads of this user: RLIMIT_NPROC counts them all, not only the sandbox's."""
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    n += len(os.listdir(f"/proc/{entry.name}/task"))
    return n


def _limits(limits: Limits, uid: int) -> tuple[str, ...]:
    mb = 1024 * 1024
    nproc = _user_tasks(uid) + limits.processes
    return (shutil.which("prlimit") or "prlimit", f"--cpu={limits.cpu_s}", f"--as={limits.memory_mb * mb}",
            f"--fsize={limits.file_mb * mb}", "--nofile=64", "--core=0", f"--nproc={nproc}")  # fmt: skip


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return _cut(f.read(MAX_OUTPUT * 4 + 1))
    except OSError:
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


def hosted(limits: Limits = Limits(), runs: Executor | None = None) -> Hosted:
    """The tool. `runs`: the threads that wait on code runs (the server gives a small
    pool of their own, so runs that hang to the wall-clock limit never hold the
    threads the rest of the server needs)."""

    async def call(args: dict[str, Any]) -> Result:
        code = textwrap.dedent(string_arg(args, "code")).strip("\n")  # models indent code inside JSON
        r = await asyncio.get_running_loop().run_in_executor(runs, run_code, code, limits)
        logs = r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
        data = {"code": code, "outputs": [{"type": "logs", "logs": logs}], "exit_code": r.exit_code}
        if r.exit_code is None:
            raise ToolFailed(f"the code ran past {limits.wall_s:g}s and was stopped\n{logs}".strip())
        if r.exit_code != 0:
            return Result(f"exit code {r.exit_code}\n{logs}".strip(), data)
        return Result(logs.strip() or "(the code printed nothing: print() what you need)", data)

    return Hosted("code_interpreter", SPEC, call, timeout_s=limits.wall_s + 5)
