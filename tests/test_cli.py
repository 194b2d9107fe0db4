"""The `ponder` command as a user runs it, on the real tiny model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ponder.modes.contemplating.program import PROGRAM_TOKENS
from tests.conftest import BIN, TINY, ponder_env

pytestmark = pytest.mark.e2e


def ponder(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ponder"), *args], input=stdin, capture_output=True, text=True, env=ponder_env(home), timeout=300
    )


@pytest.mark.parametrize("command", ["serve", "run", "chat", "pull", "models", "rm", "index"])
def test_every_command_has_help(data_dir: Path, command: str) -> None:
    r = ponder(data_dir, command, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ponder " + command)


def test_run_answers_a_prompt_and_reads_stdin(data_dir: Path, tiny_model: Path) -> None:
    r = ponder(data_dir, "run", "-m", TINY, "--max-tokens", "8", "--temperature", "0", "Say hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    piped = ponder(data_dir, "run", "-m", TINY, "--max-tokens", "8", "--temperature", "0", stdin="Say hi")
    assert piped.returncode == 0 and piped.stdout == r.stdout, "a piped prompt is the same prompt"
    empty = ponder(data_dir, "run", "-m", TINY)
    assert empty.returncode == 2 and "give a prompt" in empty.stderr


def test_run_with_an_unknown_model_fails_cleanly(data_dir: Path) -> None:
    r = ponder(data_dir, "run", "-m", "no-such-model", "hi")
    assert r.returncode == 1
    assert r.stderr.startswith("ponder: unknown model source 'no-such-model'")
    assert "Traceback" not in r.stderr


def test_chat_keeps_history_and_runs_commands(data_dir: Path, tiny_model: Path) -> None:
    script = "/help\nHello there\n/history\n/clear\n/history\n/bogus\n/exit\n"
    r = ponder(data_dir, "chat", "-m", TINY, "--max-tokens", "8", "--temperature", "0", stdin=script)
    assert r.returncode == 0, r.stderr
    assert "/clear" in r.stdout and "user: Hello there" in r.stdout and "assistant: " in r.stdout
    assert r.stdout.count("user: Hello there") == 1, "/clear emptied the history"
    assert "unknown command /bogus" in r.stdout
    assert (data_dir / "chat_history").exists()


def test_pull_models_rm_round_trip(tmp_path: Path) -> None:
    pulled = ponder(tmp_path, "pull", TINY)
    assert pulled.returncode == 0, pulled.stderr
    assert "joining and verifying 94/94 MiB 100%" in pulled.stderr
    assert ponder(tmp_path, "pull", TINY).stderr.strip().endswith("already pulled and verified 1/1 100%")
    listing = ponder(tmp_path, "models").stdout
    assert any(line.split()[:2] == [TINY, "yes"] for line in listing.splitlines())
    assert ponder(tmp_path, "rm", TINY).returncode == 0
    listing = ponder(tmp_path, "models").stdout
    assert any(line.split()[:2] == [TINY, "no"] for line in listing.splitlines())
    gone = ponder(tmp_path, "rm", TINY)
    assert gone.returncode == 1 and "is not pulled" in gone.stderr


def test_bench_modes_runs_the_gsm8k_sample_and_writes_json_and_plot(data_dir: Path, tiny_model: Path) -> None:
    out, plot = data_dir / "modes.json", data_dir / "modes.png"
    args = ["bench", "modes", "-m", TINY, "--limit", "2", "--modes", "instant,thinking", "--effort", "minimal"]
    r = ponder(data_dir, *args, "--json", str(out), "--plot", str(plot))
    assert r.returncode == 0, r.stderr
    assert "[thinking] 2/2" in r.stderr, "progress per item"
    summary = json.loads(out.read_text())["summary"]
    assert [s["config"] for s in summary] == ["instant", "thinking"]
    assert all(s["items"] == 2 for s in summary)
    # the chain's budget (minimal effort: 128), or a program first for a question with numbers (a try and a repair)
    assert summary[0]["mean_reasoning_tokens"] == 0 < summary[1]["mean_reasoning_tokens"] <= 128 + 2 * PROGRAM_TOKENS
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.stdout.splitlines()[0].split()[:3] == ["mode", "items", "accuracy"]
    # Results are saved item by item; a second run with the same file resumes.
    more = ponder(data_dir, "bench", "modes", "-m", TINY, "--limit", "3", "--modes", "instant", "--json", str(out))
    assert more.returncode == 0, more.stderr
    assert "resuming: 4 results" in more.stderr and "[instant] 3/3" in more.stderr
    assert "[instant] 1/3" not in more.stderr, "items already saved are not run again"
    summary = json.loads(out.read_text())["summary"]
    assert [(s["config"], s["items"]) for s in summary] == [("instant", 3), ("thinking", 2)]
    bad = ponder(data_dir, "bench", "modes", "--modes", "dreaming")
    assert bad.returncode == 2 and "unknown mode config" in bad.stdout


def test_bench_tools_scores_bfcl_through_the_server(data_dir: Path, tiny_model: Path) -> None:
    out = data_dir / "tools.json"
    r = ponder(data_dir, "bench", "tools", "-m", TINY, "--limit", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(out.read_text())["summary"]
    assert [s["category"] for s in summary] == ["simple_python", "multiple", "parallel", "irrelevance"]
    assert all(s["items"] == 1 and 0 <= s["accuracy"] <= 1 for s in summary)
    assert r.stdout.splitlines()[0].split() == ["category", "items", "accuracy", "latency", "s"]
    more = ponder(data_dir, "bench", "tools", "-m", TINY, "--limit", "2", "--json", str(out))  # resumes
    assert more.returncode == 0 and "resuming: 4 results" in more.stderr
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    bad = ponder(data_dir, "bench", "tools", "--categories", "live_chaos")
    assert bad.returncode == 2 and "unknown categories" in bad.stdout


def test_index_then_run_with_tools(data_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "boiler.md").write_text("The boiler is serviced every March by Ada.")
    (tmp_path / "notes" / "skip.bin").write_bytes(b"\x00\x01")
    first = ponder(data_dir, "index", str(tmp_path / "notes"), "--collection", "cli-notes")
    assert first.returncode == 0 and "1 files indexed (1 passages), 0 unchanged" in first.stdout, first.stderr
    again = ponder(data_dir, "index", str(tmp_path / "notes"), "--collection", "cli-notes")
    assert "0 files indexed (0 passages), 1 unchanged" in again.stdout and "cli-notes: 1 files" in again.stdout
    r = ponder(data_dir, "run", "-m", TINY, "--max-tokens", "32", "--temperature", "0",
               "--tools", "calculator,file_search:cli-notes", "When is the boiler serviced?")  # fmt: skip
    assert r.returncode == 0, r.stderr
    for bad, why in [("bogus", "unknown tool 'bogus'"), ("file_search:nowhere", "no knowledge collection"),
                     ("code_interpreter", "code execution is off")]:  # fmt: skip
        r = ponder(data_dir, "run", "-m", TINY, "--tools", bad, "hi")
        assert r.returncode == 1 and why in r.stderr, r.stderr
    missing = ponder(data_dir, "index", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
