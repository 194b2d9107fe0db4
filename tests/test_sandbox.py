"""The code sandbox (`ponder.tools.sandbox`) against real escape attempts: the network
(a listener on the host's loopback, the internet, DNS), files outside it (a data dir
with a database and keys, the home dir, the repo, /etc, other processes), writes outside
it, a fork bomb, a memory bomb, a CPU spin, an output flood, and processes that leave
its session. Each runs real code through `run_code` and checks the host afterwards.
Where the kernel allows no namespaces they skip, but for the check that the tool then
refuses to run code at all; where it does, a sandbox that cannot be built fails them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ponder.tools import ToolFailed, sandbox

SECRET = "sk-ponder-3c0ffee-not-for-the-sandbox"

# Each attempt prints "<label> contained <error>[:<errno>]" or "<label> ESCAPED <what it got>";
# `facts` prints what the code sees, as JSON.
ATTEMPT = """
import errno, json, os, socket, sys

def attempt(label, f):
    try:
        print(label, "ESCAPED", repr(f())[:200])
    except Exception as e:
        code = errno.errorcode.get(e.errno, e.errno) if isinstance(e, OSError) and e.errno else ""
        print(label, "contained", f"{type(e).__name__}:{code}".rstrip(":"))

def facts(**seen):
    print("facts", "seen", json.dumps(seen))
"""


def run(code: str, **limits: Any) -> sandbox.Outcome:
    skip_without_sandbox()
    return sandbox.run_code(code, sandbox.Limits(**limits))


def skip_without_sandbox() -> None:
    """Skip where the kernel allows no namespaces; fail where it does and the sandbox
    still cannot be built (that is a bug, not a machine without the feature)."""
    why = sandbox.unavailable()
    if why is None:
        return
    flags = "-npmf" if os.getuid() == 0 else "-rnpmf"
    if shutil.which("unshare") is None or subprocess.run(["unshare", flags, "true"], capture_output=True).returncode:
        pytest.skip(why)
    pytest.fail(f"namespaces work on this machine, yet the sandbox cannot be built: {why}")


def attempts(out: sandbox.Outcome) -> tuple[dict[str, str], dict[str, Any]]:
    """label -> the error that stopped it (or ESCAPED), and the facts it printed."""
    results, seen = {}, {}
    for line in out.stdout.splitlines():
        label, verdict, detail = line.split(" ", 2)
        if label == "facts":
            seen = json.loads(detail)
        else:
            results[label] = detail if verdict == "contained" else "ESCAPED"
    return results, seen


def watched(code: str, marker: str, **limits: Any) -> tuple[sandbox.Outcome, int, int]:
    """Run `code` and count the host's processes marked `marker` a second in, and after."""
    skip_without_sandbox()
    outcome: list[sandbox.Outcome] = []
    runner = threading.Thread(target=lambda: outcome.append(run(code, **limits)))
    runner.start()
    time.sleep(1)
    during = len(processes_with(marker))
    runner.join()
    return outcome[0], during, len(processes_with(marker))


def processes_with(marker: str) -> list[int]:
    """Host processes whose command line holds `marker`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
    return pids


def scratch(*names: str) -> list[str]:
    """What the sandbox's /tmp holds: `names`, and the way to this Python when it is
    installed under the host's /tmp (a checkout there, as in CI)."""
    way_in = {p[len("/tmp/") :].split("/")[0] for p in sandbox._shown() if p.startswith("/tmp/")}
    return sorted({*names, *way_in})


def test_ordinary_code_runs_with_an_empty_environment_in_a_scratch_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONDER_SECRET", SECRET)
    r = run(
        "import json, math, os, numpy\n"
        "print(2 + 2, math.isqrt(49), json.dumps([1]), int(numpy.arange(5).sum()))\n"
        "print(os.environ.get('PONDER_SECRET'), os.getcwd(), sorted(os.listdir()))\n"
        "open('left.txt', 'w').write('x')"
    )
    assert r.exit_code == 0 and r.stderr == ""
    assert r.stdout.splitlines() == ["4 7 [1] 10", f"None /tmp {scratch('main.py')}"]
    again = run("import os; print(sorted(os.listdir()))")
    assert again.stdout == f"{scratch('main.py')}\n"  # each run gets a fresh working directory


def test_there_is_no_network_not_even_the_host_s_loopback() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # from the host, it answers
            server.accept()[0].close()
        r = run(
            ATTEMPT + f"attempt('loopback', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=3))\n"
            "attempt('internet', lambda: socket.create_connection(('1.1.1.1', 53), timeout=3))\n"
            "attempt('dns', lambda: socket.getaddrinfo('example.com', 443))\n"
            "facts(interfaces=[name for _, name in socket.if_nameindex()])\n"
        )
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached it
    got, seen = attempts(r)
    assert got.pop("dns").startswith("gaierror")
    assert got == {"loopback": "OSError:ENETUNREACH", "internet": "OSError:ENETUNREACH"}
    assert seen == {"interfaces": ["lo"]}  # and that one is down


def test_files_outside_it_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "ponder-home"  # a data dir as the server keeps it
    data.mkdir()
    (data / "ponder.db").write_text(f"api_keys: {SECRET}")
    home = os.path.realpath(os.path.expanduser("~"))
    monkeypatch.setenv("PONDER_SECRET", SECRET)
    r = run(
        ATTEMPT + f"attempt('database', lambda: open({str(data / 'ponder.db')!r}).read())\n"
        f"attempt('data_dir', lambda: os.listdir({str(data)!r}))\n"
        f"attempt('default_data_dir', lambda: os.listdir({os.path.join(home, '.local/share/ponder')!r}))\n"
        f"attempt('this_test', lambda: open({__file__!r}).read())\n"
        "attempt('passwd', lambda: open('/etc/passwd').read())\n"
        "attempt('host_root', lambda: open('/proc/1/root/etc/passwd').read())\n"
        "facts(tmp=os.listdir('/tmp'), pids=[p for p in os.listdir('/proc') if p.isdigit()],\n"
        "      pid1=open('/proc/1/cmdline').read().split('\\0'), environ=open('/proc/1/environ').read(),\n"
        f"      home=os.listdir({home!r}) if os.path.isdir({home!r}) else [])\n"
    )
    got, seen = attempts(r)
    assert got == {"database": "FileNotFoundError:ENOENT", "data_dir": "FileNotFoundError:ENOENT",
                   "default_data_dir": "FileNotFoundError:ENOENT", "this_test": "FileNotFoundError:ENOENT",
                   "passwd": "FileNotFoundError:ENOENT", "host_root": "FileNotFoundError:ENOENT"}  # fmt: skip
    assert sorted(seen["tmp"]) == scratch("main.py") and seen["pids"] == ["1"]  # its own /tmp and processes only
    assert seen["pid1"][-2:] == ["/tmp/main.py", ""] and "PONDER_SECRET" not in seen["environ"]
    # the home dir shows at most the way to this Python's installation, when that lies in it
    way_in = {p[len(home) + 1 :].split("/")[0] for p in sandbox._shown() if p.startswith(home + "/")}
    assert set(seen["home"]) <= way_in
    assert SECRET not in r.stdout + r.stderr


def test_writes_outside_it_do_not_reach_the_host(tmp_path: Path) -> None:
    marker = f"ponder-escape-{time.monotonic_ns()}"
    venv_file = Path(sys.prefix, marker)
    r = run(
        ATTEMPT + f"attempt('tmp_path', lambda: open({str(tmp_path / marker)!r}, 'w'))\n"
        f"attempt('python_prefix', lambda: open({str(venv_file)!r}, 'w'))\n"
        f"attempt('usr', lambda: open('/usr/{marker}', 'w'))\n"
        f"attempt('root', lambda: open('/{marker}', 'w'))\n"
        "attempt('chmod_dev_null', lambda: os.chmod('/dev/null', 0))\n"
        f"attempt('scratch', lambda: open('/tmp/{marker}', 'w').write('x'))\n"
    )
    try:
        assert attempts(r)[0] == {"tmp_path": "FileNotFoundError:ENOENT", "python_prefix": "OSError:EROFS",
                                  "usr": "OSError:EROFS", "root": "OSError:EROFS", "chmod_dev_null": "OSError:EROFS",
                                  "scratch": "ESCAPED"}  # fmt: skip
        for path in (tmp_path / marker, venv_file, Path("/usr", marker), Path("/", marker), Path("/tmp", marker)):
            assert not path.exists()
        dev_null = os.stat("/dev/null")
        assert stat.S_ISCHR(dev_null.st_mode) and stat.S_IMODE(dev_null.st_mode) == 0o666
    finally:
        venv_file.unlink(missing_ok=True)


def test_a_fork_bomb_stops_at_the_process_limit_and_dies_with_the_sandbox() -> None:
    marker = f"ponder-bomb-{time.monotonic_ns()}"
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    code = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {bomb!r}, {marker!r}])"
    started = time.monotonic()
    r, during, after = watched(code, marker, wall_s=3, processes=8)
    assert r.exit_code is None and time.monotonic() - started < 30  # stopped at the wall clock, not left running
    assert 1 <= during <= 8 and after == 0  # it ran up to the process limit, and nothing of it is left
    assert subprocess.run(["true"], check=False).returncode == 0  # the host still starts processes


def test_a_memory_bomb_fails_inside_the_sandbox() -> None:
    r = run("x = bytearray(4 * 2**30)", memory_mb=256)
    assert r.exit_code == 1 and r.stderr.rstrip().endswith("MemoryError")
    r = run("x = []\nwhile True:\n    x.append(bytearray(2**20))", memory_mb=256)
    assert r.exit_code == 1 and r.stderr.rstrip().endswith("MemoryError")
    # its working directory is memory too (a tmpfs), capped at disk_mb
    r = run("for i in range(100):\n    open(f'f{i}', 'wb').write(bytes(2**20))", disk_mb=16)
    assert r.exit_code == 1 and "No space left on device" in r.stderr
    assert run("print('still fine')").stdout == "still fine\n"


def test_cpu_and_wall_clock_limits_stop_it() -> None:
    spin = run("while True: pass", cpu_s=1, wall_s=120)
    assert spin.exit_code == -9  # killed at its CPU limit (the wall clock would have said None)
    started = time.monotonic()
    sleeper = run("import time\ntime.sleep(60)", wall_s=1)
    assert sleeper.exit_code is None and time.monotonic() - started < 30  # killed at the wall clock, long before 60 s


def test_an_output_flood_is_cut() -> None:
    r = run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 10**6)", file_mb=4)
    assert r.stdout == "x" * sandbox.MAX_OUTPUT + f"\n[... cut at {sandbox.MAX_OUTPUT} characters]"
    assert r.exit_code == 1 and "File too large" in r.stderr  # the file-size limit ended it at 4 MB


def test_processes_die_with_it_even_outside_its_session() -> None:
    marker = f"ponder-escape-{time.monotonic_ns()}"
    code = (
        "import os, subprocess, time\nos.setsid()\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 60; :', {marker!r}], start_new_session=True)\n"
        f"if os.fork() == 0:\n    os.setsid()\n    os.execvp('sh', ['sh', '-c', 'sleep 60; :', {marker!r}])\n"
        "print('parent done', flush=True)\ntime.sleep(60)"
    )
    r, during, after = watched(code, marker, wall_s=2)
    assert r.stdout == "parent done\n" and r.exit_code is None
    assert during == 2 and after == 0  # the PID namespace took them down


async def test_without_a_sandbox_the_tool_refuses_to_run_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "unshare"  # as on a machine that forbids namespaces
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    sandbox.unavailable.cache_clear()
    try:
        assert "Operation not permitted" in (sandbox.unavailable() or "")
        with pytest.raises(ToolFailed, match="code execution is unavailable"):
            sandbox.run_code(f"open({str(tmp_path / 'ran')!r}, 'w')")
        with pytest.raises(ToolFailed, match="Operation not permitted"):
            await sandbox.hosted().call({"code": f"open({str(tmp_path / 'ran')!r}, 'w')"})
        assert not (tmp_path / "ran").exists()
    finally:
        monkeypatch.undo()
        sandbox.unavailable.cache_clear()
