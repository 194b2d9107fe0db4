"""API keys end to end: keys made and revoked with `ponder keys`, a real `ponder
serve` that requires them, and the OpenAI client (the scripted echo model: what
is checked here is who gets in, not what the model says)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import BIN, free_port, ponder_env, start, stop

pytestmark = pytest.mark.e2e


def keys(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ponder"), "keys", *args], env=ponder_env(home), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A server that requires keys: (base URL, its data dir, its log)."""
    home = tmp_path_factory.mktemp("guarded-home")
    (home / "no-config.toml").write_text('[models.echo]\nbackend = "scripted"\n[media]\nspeech_to_text = ""\n'
                                         'text_to_speech = ""\n')  # fmt: skip
    port = free_port()
    log = home / "serve.log"
    cmd = [str(BIN / "ponder"), "serve", "--model", "echo", "--port", str(port), "--log-level", "info"]
    proc = start(cmd, ponder_env(home, PONDER_AUTH="required"), f"http://127.0.0.1:{port}/health", log)
    yield f"http://127.0.0.1:{port}/v1", home, log
    stop(proc)


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


ASK = [{"role": "user", "content": "open sesame"}]


def test_missing_invalid_and_revoked_keys_get_401(guarded: tuple[str, Path, Path]) -> None:
    url, home, log = guarded
    made = keys(home, "create", "alice")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("pdr-") and len(secret) > 40

    r = client(url, secret).chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    assert (r.choices[0].message.content or "").startswith("open sesame")
    missing = httpx.post(f"{url}/chat/completions", json={"model": "echo", "messages": ASK})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError) as e:
        client(url, "pdr-not-a-key").chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key"

    key_id = next(line.split()[0] for line in keys(home, "list").stdout.splitlines() if " alice " in line)
    assert keys(home, "revoke", key_id).returncode == 0
    with pytest.raises(openai.AuthenticationError):  # at once: no restart, no cache
        client(url, secret).chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        client(url, secret).models.list()
    assert "revoked" in keys(home, "list").stdout
    assert secret not in keys(home, "list").stdout
    assert secret not in log.read_text()  # logs never hold a key
    assert secret.encode() not in b"".join(p.read_bytes() for p in home.glob("ponder.db*"))


def test_another_keys_response_id_gets_404(guarded: tuple[str, Path, Path]) -> None:
    url, home, _ = guarded
    alice = client(url, keys(home, "create", "alice2").stdout.strip())
    bob = client(url, keys(home, "create", "bob").stdout.strip())
    r = alice.responses.create(model="echo", input="my secret plans")
    assert alice.responses.retrieve(r.id).output_text.startswith("my secret plans")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="echo", input="go on", previous_response_id=r.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(r.id)
    assert alice.responses.retrieve(r.id).id == r.id


def test_a_key_over_its_rate_gets_429_and_the_client_retries_after(guarded: tuple[str, Path, Path]) -> None:
    url, home, _ = guarded
    secret = keys(home, "create", "carol", "--rpm", "2").stdout.strip()
    for _ in range(2):
        client(url, secret).chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as e:
        client(url, secret).chat.completions.create(model="echo", messages=ASK)  # type: ignore[arg-type]
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60


def test_keys_cli_refuses_bad_input(tmp_path: Path) -> None:
    assert keys(tmp_path, "revoke", "key_nope").returncode == 1
    assert keys(tmp_path, "create", "x", "--rpm", "0").returncode == 2
