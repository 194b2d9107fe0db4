"""Contemplating's attempts and Auto on the scripted backend: the waves, the settled-
answer stop, the program agent (run in the real sandbox), the confidence filter, the
judge, and Auto's escalation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any

import pytest

from ponder.backends.scripted import Script, ScriptedBackend
from ponder.config import ModeSettings
from ponder.errors import UpstreamError
from ponder.media import own_words, vision
from ponder.modes import ModeRequest, resolve, run
from ponder.modes.contemplating import program as program_agent
from ponder.modes.contemplating.planner import quantitative
from ponder.modes.prompts import load
from ponder.types import (
    AgentEvent,
    ChatRequest,
    Done,
    Event,
    Message,
    ReasoningDelta,
    TextDelta,
    TokenLogprob,
    Usage,
    collect,
)

ARITHMETIC = ChatRequest("m", (Message("user", "A box holds 6 rows of 7 eggs. How many eggs are in the box?"),))
THINK = load("thinking")
PROMPTS = load("contemplating")
STYLES = {s["name"]: s["note"] for s in PROMPTS["styles"]}
needs_sandbox = pytest.mark.skipif(not program_agent.available(), reason="this kernel allows no sandbox")


def agent_of(req: ChatRequest) -> str:
    """Which agent or step a request comes from."""
    text = req.messages[-1].content
    if req.prefill == PROMPTS["program"]["fence"]:
        return "program"
    if "reached different answers" in text:
        return "judge"
    if text.startswith("A program that solves this computed"):
        return "program-answer"
    asked = next(m.content for m in req.messages if m.role == "user")
    return next((name for name, note in STYLES.items() if note in asked), "direct")


def scripted(answers: dict[str, Any], judge: str = "", code: dict[str, str] | None = None) -> Callable[..., Script]:
    """Reply to each agent with its answer: a chain reasons to it and states it, a
    program prints it; the judge says `judge`."""
    code = code or {}

    def respond(req: ChatRequest) -> Script:
        who = agent_of(req)
        if who == "judge":
            return judge
        if who == "program-answer":
            return f"There are {answers['program']} eggs."
        if who == "program":
            sampled = (req.params.temperature or 0) > 0
            return code.get("sampled" if sampled else "greedy", f"rows = 6\nprint({answers['program']})\n")
        answer = answers[who]
        if isinstance(answer, BaseException | list):
            return answer
        if req.prefill == THINK["open"]:
            return f"working it out gives {answer}"
        return f"The answer is {answer}."

    return respond


def contemplation(chat: ChatRequest = ARITHMETIC, **kw: Any) -> ModeRequest:
    return replace(resolve(chat, ModeSettings(), mode="contemplating"), compression=False, **kw)


def synthesis(done: Any) -> dict[str, Any]:
    """What the synthesis.start event said: how the answer was settled."""
    return next(e.data for e in done.progress if e.kind == "synthesis.start")


def methods(done: Any) -> list[str]:
    return [e.data["method"] for e in done.progress if e.kind == "agent.start"]


def test_a_program_agent_is_planned_for_questions_with_numbers_only() -> None:
    assert quantitative(ARITHMETIC.messages[-1].content)
    assert not quantitative("Which is the capital of Australia?")
    assert not quantitative("What is 2 + 2?\nA. 3\nB. 4\nC. 5")  # options to choose from: the chains choose


@needs_sandbox
async def test_the_direct_answer_and_programs_that_agree_settle_it_in_one_wave() -> None:
    backend = ScriptedBackend(respond=scripted({"direct": "42", "program": "42"}))
    done = await collect(run(backend, contemplation()))
    assert methods(done) == ["direct", "program", "program"]  # the chain of the second wave never ran
    settled = synthesis(done)
    assert settled["method"] == "agreement" and settled["answer"] == "42"
    # the first two to agree decide it, and the third, if still at work then, is stopped with no vote
    evidence = done.progress[-1]
    chance = evidence.data.pop("confidence")
    assert chance is None or 0 <= chance <= 1  # None until a calibration is fitted for its kind
    voters = evidence.data.pop("voters")
    direct = next(e.data for e in done.progress if e.kind == "agent.done" and e.data["method"] == "direct")
    assert voters in (2, 3) and settled["tally"] == {"42": float(voters)}
    assert evidence.kind == "evidence" and evidence.data == {
        "method": "agreement", "agreeing": voters, "answers": 1, "program_agrees": True,
        "methods": 1 + direct["ok"], "winner_confidence": 1.0, "option_probability": None}  # fmt: skip
    assert "It printed:\n42" in done.reasoning  # the programs really ran, in the sandbox
    assert done.text == ("The answer is 42." if direct["ok"] else "There are 42 eggs.")  # its words, if it voted


@needs_sandbox
async def test_two_of_the_first_three_settle_it_and_the_program_is_put_in_words() -> None:
    backend = ScriptedBackend(respond=scripted({"direct": "40", "program": "42"}))
    done = await collect(run(backend, contemplation()))
    assert methods(done) == ["direct", "program", "program"]
    assert synthesis(done) == {"method": "vote", "tally": {"42": 2.0, "40": 1.0}, "answer": "42"}
    assert done.text == "There are 42 eggs."  # only programs reached it: one short call words it


class Writing(ScriptedBackend):
    """The direct answer writes on and on (for up to 100 s) until it is stopped; the
    other agents answer as scripted."""

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        if agent_of(request) != "direct":
            async for event in super().stream(request):
                yield event
            return
        self.requests.append(request)
        for i in range(100_000):
            yield TextDelta(f" step{i}")
            await asyncio.sleep(0.001)
        yield Done("stop", Usage(1, 100_000))


@needs_sandbox
async def test_once_two_programs_agree_the_direct_answer_still_being_written_is_stopped() -> None:
    backend = Writing(respond=scripted({"program": "42"}))
    done = await collect(run(backend, contemplation()))
    assert methods(done) == ["direct", "program", "program"]
    direct = next(e.data for e in done.progress if e.kind == "agent.done" and e.data["method"] == "direct")
    assert direct["stopped"] == "settled" and direct["vote"] is None and not direct["ok"]  # no vote
    assert synthesis(done) == {"method": "agreement", "tally": {"42": 2.0}, "answer": "42"}
    assert done.text == "There are 42 eggs."  # only programs reached it: one short call words it
    assert "stopped: the others had settled the answer" in done.reasoning
    assert done.progress[-1].data["methods"] == 1  # one method reached it


@needs_sandbox
async def test_a_three_way_split_runs_the_second_wave_and_the_plurality_wins() -> None:
    answers = {"direct": "40", "program": "42", "equations": "42"}
    backend = ScriptedBackend(respond=scripted(answers, code={"sampled": "print(41)\n"}))
    done = await collect(run(backend, contemplation()))
    assert methods(done) == ["direct", "program", "program", "chain"]
    assert synthesis(done)["method"] == "vote"
    assert synthesis(done)["tally"] == {"42": 2.0, "40": 1.0, "41": 1.0}
    assert done.text == "The answer is 42."  # the chain that reached it words the answer


@needs_sandbox
async def test_a_failing_program_is_shown_its_error_and_fixed_once() -> None:
    code = {"greedy": "print(6 * seven)\n", "sampled": "print(41)\n"}  # the greedy one's fix decides it
    backend = ScriptedBackend(respond=scripted({"direct": "42", "program": "42"}, code=code))
    calls = []
    inner = backend.respond
    assert inner is not None

    def respond(req: ChatRequest) -> Script:
        if agent_of(req) == "program" and len(req.messages) > 1:  # the repair turn: the fixed program
            calls.append(req.messages[-1].content)
            return "print(6 * 7)\n"
        return inner(req)

    backend.respond = respond
    done = await collect(run(backend, contemplation()))
    assert len(calls) == 1 and "NameError" in calls[0]
    assert synthesis(done)["method"] == "vote" and synthesis(done)["answer"] == "42"


@needs_sandbox
async def test_program_agents_are_held_to_the_agent_budget() -> None:
    backend = ScriptedBackend(respond=scripted({"direct": "42", "program": "42"}))
    done = await collect(run(backend, contemplation(agent_budget=300)))
    assert {r.params.max_tokens for r in backend.requests if agent_of(r) == "program"} == {300}
    assert synthesis(done)["answer"] == "42"


@needs_sandbox
async def test_no_two_agreeing_goes_to_the_judge_which_must_name_a_candidate() -> None:
    answers = {"direct": "40", "program": "42", "equations": "43"}
    code = {"sampled": "print(41)\n"}
    backend = ScriptedBackend(
        respond=scripted(answers, judge="Attempt 3 is right. The correct answer is 42.", code=code)
    )
    done = await collect(run(backend, contemplation()))
    first, second = (r.messages[-1].content for r in backend.requests if agent_of(r) == "judge")
    assert first.index("(answer: 40)") < first.index("(answer: 42)")  # chains are quoted first for their answers
    assert second.index("(answer: 42)") < second.index("(answer: 40)")  # then the same attempts the other way round
    assert all(r.params.temperature == 0.0 for r in backend.requests if agent_of(r) == "judge")
    assert synthesis(done)["method"] == "judge" and synthesis(done)["answer"] == "42"
    assert done.text == "There are 42 eggs."  # only a program reached it: one short call words it

    # a judge that names an answer no agent reached is not taken: the direct answer stands
    backend = ScriptedBackend(respond=scripted(answers, judge="The correct answer is 44.", code=code))
    done = await collect(run(backend, contemplation()))
    assert synthesis(done)["method"] == "split" and synthesis(done)["answer"] == "40"
    assert done.text == "The answer is 40."


@needs_sandbox
async def test_a_judges_failed_second_reading_leaves_the_direct_answer_and_counts_the_first() -> None:
    answers = {"direct": "40", "program": "42", "equations": "43"}
    inner = scripted(answers, judge="Attempt 2 holds up. The correct answer is 42.", code={"sampled": "print(41)\n"})
    readings = []

    def respond(req: ChatRequest) -> Script:
        if agent_of(req) == "judge":
            readings.append(req)
            if len(readings) == 2:  # the attempts in the other order: the engine fails
                return UpstreamError("the engine went away")
        return inner(req)

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, contemplation()))
    assert len(readings) == 2
    assert synthesis(done)["method"] == "split" and done.text == "The answer is 40."
    assert "Attempt 2 holds up." in "".join(e.data["text"] for e in done.progress if e.kind == "judge.delta")
    # every call that answered is in the usage, the first reading's too (one word, one token here)
    answered = [r for r in backend.requests if r is not readings[1]]
    assert done.usage.prompt_tokens == sum(len(m.content.split()) for r in answered for m in r.messages)


@needs_sandbox
async def test_a_judge_that_names_whichever_attempt_it_read_first_is_not_taken() -> None:
    answers = {"direct": "40", "program": "42", "equations": "43"}

    def respond(req: ChatRequest) -> Script:
        if agent_of(req) == "judge":  # position, not checking: the first attempt quoted, whatever it is
            first = req.messages[-1].content.split("(answer: ", 1)[1].split(")", 1)[0]
            return f"The correct answer is {first}."
        return scripted(answers, code={"sampled": "print(41)\n"})(req)

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, contemplation()))
    assert sum(agent_of(r) == "judge" for r in backend.requests) == 2
    assert synthesis(done)["method"] == "split" and synthesis(done)["answer"] == "40"  # the model's own answer
    assert done.text == "The answer is 40."
    assert done.progress[-1].kind == "evidence" and done.progress[-1].data["method"] == "split"


def _tokens(text: str, sure: bool = True) -> list[Any]:
    """A reply, a word a token, each with five candidates: one far ahead of the rest
    (`sure`, a token confidence of about 7.2) or all alike (about 1.7)."""
    top = (-0.01, -9.0, -9.0, -9.0, -9.0) if sure else (-1.5, -1.6, -1.7, -1.8, -1.9)
    words = [w for w in text.split(" ")]
    events: list[Any] = [TextDelta(w if i == 0 else " " + w, (TokenLogprob(w, top[0], tuple((w, x) for x in top)),))
                         for i, w in enumerate(words)]  # fmt: skip
    return [*events, Done("stop", Usage(1, len(words)))]


async def test_a_chain_less_sure_than_the_first_wave_is_stopped_and_has_no_vote() -> None:
    chat = ChatRequest("m", (Message("user", "Which planet is the largest?"),))  # no numbers: chains only
    steady = "working it out: " + " ".join(f"fact{i}" for i in range(40)) + " gives {}"

    def respond(req: ChatRequest) -> Script:
        who = agent_of(req)
        says = {"direct": "41", "equations": "40", "verify": "41", "fresh-eyes": "40"}.get(who, "")
        if who == "judge":
            return "The correct answer is 40."  # reached only if the unsure chain kept its vote (a 2-2 tie)
        if req.prefill == THINK["open"]:
            return _tokens(steady.format(says), sure=who != "fresh-eyes")
        return f"The answer is {says}."

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, contemplation(chat)))
    outcomes = {e.agent: e.data for e in done.progress if e.kind == "agent.done"}
    assert outcomes[3]["stopped"] == "confidence" and outcomes[3]["ok"] is False
    assert outcomes[3]["reasoning_tokens"] == 32  # stopped at its first full window, not at its end
    assert synthesis(done)["method"] == "vote" and done.text == "The answer is 41."
    assert not any(agent_of(r) == "judge" for r in backend.requests)
    # it never got to an answer phase
    assert sum(1 for r in backend.requests if agent_of(r) == "fresh-eyes") == 1


@needs_sandbox
async def test_a_sampled_chain_is_not_held_to_the_bar_of_a_greedy_direct_answer() -> None:
    # The direct answer is greedy and sure; the chain of the second wave is sampled, and
    # sampling alone makes its tokens less sure. Held to the direct answer's bar it was
    # stopped on every split; held only to chains drawn as it is (none here), it votes.
    steady = " ".join(f"step{i}" for i in range(40))

    def respond(req: ChatRequest) -> Script:
        who = agent_of(req)
        if who == "judge":
            return "The correct answer is 40."  # reached only if the chain had no vote (a three-way split)
        if who == "direct":
            return _tokens(f"{steady} so the answer is 40.")
        if who == "program":
            return "print(41)\n" if (req.params.temperature or 0) > 0 else "print(42)\n"
        if who == "program-answer":
            return "There are 42 eggs."
        if req.prefill == THINK["open"]:
            return _tokens(f"{steady} gives 42", sure=False)
        return "The answer is 42."

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, contemplation()))
    assert methods(done) == ["direct", "program", "program", "chain"]
    chain = next(e.data for e in done.progress if e.kind == "agent.done" and e.data["method"] == "chain")
    assert chain["ok"] and chain["vote"] == "42"
    assert synthesis(done) == {"method": "vote", "tally": {"42": 2.0, "40": 1.0, "41": 1.0}, "answer": "42"}
    assert not any(agent_of(r) == "judge" for r in backend.requests)


def test_the_window_confidence_of_a_trace() -> None:
    from ponder.modes.confidence import Meter, measure, token_confidence

    peaked = TokenLogprob("a", -0.01, (("a", -0.01), ("b", -8.0), ("c", -9.0)))
    flat = TokenLogprob("a", -1.0, (("a", -1.0), ("b", -1.2), ("c", -1.3)))
    assert token_confidence(peaked) > 5 > token_confidence(flat)
    meter = Meter(window=4)
    meter.add([peaked] * 8 + [flat] * 4 + [peaked] * 8)
    signal = meter.signal()
    assert signal.lowest == pytest.approx(token_confidence(flat))
    assert signal.lowest < signal.mean < signal.tail
    assert measure([]).known is False


# --- Auto ------------------------------------------------------------------------


def auto(chat: ChatRequest = ARITHMETIC, bar: float = 5.0, programs: bool = True) -> ModeRequest:
    return replace(resolve(chat, ModeSettings(), mode="auto"), compression=False, auto_confidence=bar,
                   programs=programs)  # fmt: skip


def coded(answer: str, sure: bool, respond: Callable[..., Script]) -> Callable[..., Script]:
    """`respond`, but a greedy program that prints `answer`, as sure of its code as `sure`."""

    def reply(req: ChatRequest) -> Script:
        greedy = agent_of(req) == "program" and not req.params.temperature
        return _tokens(f"eggs = 6 * 7\nprint({answer})\n", sure=sure) if greedy else respond(req)

    return reply


@needs_sandbox
async def test_auto_answers_a_sure_program_at_once() -> None:
    backend = ScriptedBackend(respond=coded("42", True, scripted({"program": "42"})))
    done = await collect(run(backend, auto()))
    assert [agent_of(r) for r in backend.requests] == ["program", "program-answer"]  # put in a sentence once sure
    assert done.text == "There are 42 eggs." and "print(42)" in done.reasoning
    report = next(e for e in done.progress if e.kind == "auto").data
    assert report["escalated"] is False and report["first"] == "program" and report["confidence"] > 5
    seen = done.progress[-1]
    assert seen.kind == "evidence" and seen.data["code_window"] > 5 and seen.data["round_number"] is True
    assert done.usage.tool_calls == 1 and done.usage.reasoning_tokens == 5 < done.usage.completion_tokens  # 5: the code


@needs_sandbox
async def test_auto_escalates_an_unsure_program_with_it_as_the_first_attempt() -> None:
    backend = ScriptedBackend(respond=coded("42", False, scripted({"direct": "42", "program": "42"})))
    done = await collect(run(backend, auto()))
    report = next(e for e in done.progress if e.kind == "auto").data
    assert report["escalated"] is True and report["first"] == "program" and report["confidence"] < 5
    assert methods(done) == ["direct", "program"]  # the program took its own place in the plan; the others agreed
    assert synthesis(done)["method"] == "agreement" and done.text == "The answer is 42."
    assert "program-answer" not in [agent_of(r) for r in backend.requests]  # no sentence for an unsure number
    assert done.usage.tool_calls == 2  # the greedy program ran once, the sampled one beside the direct answer


async def test_auto_answers_a_confident_chain_at_once() -> None:
    def respond(req: ChatRequest) -> Script:
        if req.prefill == THINK["open"]:  # the reasoning, unsure: only the answer's confidence counts
            return _tokens("6 * 7 = 42 eggs, so \\boxed{42}", sure=False)
        return _tokens("There are \\boxed{42} eggs.")  # the answer, asked for after it, sure of itself

    backend = ScriptedBackend(respond=respond)
    events = [e async for e in run(backend, auto(programs=False))]  # no program: a chain first
    done = await collect(_replay(events))
    reasoning, answer = backend.requests
    assert reasoning.prefill == THINK["open"] and answer.params.logprobs == 5  # one Thinking chain, its answer measured
    assert done.text == "There are 42 eggs."  # the chain's answer, without its \\boxed
    assert "6 * 7 = 42" in done.reasoning
    report = next(e for e in done.progress if e.kind == "auto").data
    assert report["escalated"] is False and report["first"] == "chain" and report["confidence"] > 5
    assert not any(e.kind == "plan" for e in done.progress)
    assert done.usage.reasoning_tokens > 0 and not done.logprobs  # the client asked for none


async def test_auto_escalates_an_unsure_chain_with_it_as_the_first_attempt() -> None:
    def respond(req: ChatRequest) -> Script:
        if agent_of(req) == "direct" and req.prefill == THINK["open"]:  # Auto's chain, sure as it reasons
            return _tokens("6 * 7 is 40")
        if agent_of(req) == "direct":
            return _tokens("The answer is 40.", sure=False)  # and unsure of the answer it states
        return scripted({})(req)

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, auto(programs=False)))
    report = next(e for e in done.progress if e.kind == "auto").data
    assert report["escalated"] is True and report["first"] == "chain" and report["confidence"] < 5
    # the chain took the first chain's place: the model's own answer comes next, and agrees
    assert methods(done) == ["direct"] and synthesis(done)["method"] == "agreement"
    assert done.usage.reasoning_tokens >= 4  # the first chain's reasoning counts


async def test_auto_answers_a_lettered_question_with_the_models_own_answer() -> None:
    chat = ChatRequest("m", (Message("user", "Which is largest?\nA. 3\nB. 9\nC. 5\nAnswer with the letter."),))
    backend = ScriptedBackend(_tokens("B"))
    done = await collect(run(backend, auto(chat)))
    assert len(backend.requests) == 1 and backend.requests[0].messages == chat.messages  # the message alone
    assert done.text == "B" and next(e for e in done.progress if e.kind == "auto").data["first"] == "direct"


async def test_auto_answers_directly_when_the_engine_gives_no_logprobs() -> None:
    backend = ScriptedBackend(respond=lambda r: "6 * 7 = 42, and 12 boxes hold 504.")  # no log-probabilities
    done = await collect(run(backend, auto(programs=False)))
    assert len(backend.requests) == 2 and done.text == "6 * 7 = 42, and 12 boxes hold 504."  # reasoning, answer
    assert next(e for e in done.progress if e.kind == "auto").data["escalated"] is False


async def test_auto_never_escalates_an_open_request() -> None:
    chat = ChatRequest("m", (Message("user", "Write a short poem about the sea."),))
    backend = ScriptedBackend(_tokens("Waves fold and fold again", sure=False))
    events = [e async for e in run(backend, auto(chat))]
    done = await collect(_replay(events))
    assert done.text == "Waves fold and fold again" and len(backend.requests) == 1
    assert not done.reasoning and sum(isinstance(e, TextDelta) for e in events) > 1  # it streamed as written


# --- Thinking: a program's answer to a question with numbers -------------------------


def thinking(chat: ChatRequest = ARITHMETIC, **kw: Any) -> ModeRequest:
    return replace(resolve(chat, ModeSettings(), mode="thinking"), compression=False, **kw)


@needs_sandbox
async def test_thinking_answers_a_question_with_numbers_by_a_program() -> None:
    backend = ScriptedBackend(respond=scripted({"direct": "40", "program": "42"}))
    done = await collect(run(backend, thinking()))
    assert [agent_of(r) for r in backend.requests] == ["program", "program-answer"]  # no chain
    assert done.text == "There are 42 eggs."  # the program's answer, in the sentence asked for
    assert "print(42)" in done.reasoning and "It printed:\n42" in done.reasoning  # the code is the reasoning
    seen = done.progress[-1]
    assert seen.kind == "evidence" and {"code_window", "repaired", "round_number"} <= seen.data.keys()
    assert seen.data["repaired"] is False
    # what it cost counts: one sandbox run, the program's tokens as reasoning, and the sentence's
    assert done.usage.tool_calls == 1 and 0 < done.usage.reasoning_tokens < done.usage.completion_tokens
    chained = await collect(run(ScriptedBackend(respond=scripted({"direct": "40"})), thinking(programs=False)))
    assert chained.text == "The answer is 40." and "code_window" not in chained.progress[-1].data


@needs_sandbox
async def test_a_program_that_fails_is_followed_by_a_chain() -> None:
    code = {"greedy": "print(6 * seven)\n"}  # fails, and so does its repair
    backend = ScriptedBackend(respond=scripted({"direct": "40", "program": "42"}, code=code))
    done = await collect(run(backend, thinking()))
    assert done.text == "The answer is 40."
    assert [agent_of(r) for r in backend.requests] == ["program", "program", "direct", "direct"]  # repair, chain
    assert "NameError" in done.reasoning and "working it out gives 40" in done.reasoning
    assert "reasoning_window" in done.progress[-1].data  # a chain's evidence
    alone = await collect(run(ScriptedBackend(respond=scripted({"direct": "40"})), thinking(programs=False)))
    assert done.usage.tool_calls == 2 and done.usage.completion_tokens > alone.usage.completion_tokens  # all counted


@needs_sandbox
async def test_answer_now_writes_no_program() -> None:
    req = thinking()
    req.steer.answer_now()  # the client wants the answer now: the program is not written
    backend = ScriptedBackend(respond=scripted({"direct": "42", "program": "40"}))
    done = await collect(run(backend, req))
    assert done.text == "The answer is 42." and "program" not in [agent_of(r) for r in backend.requests]
    assert done.usage.tool_calls == 0


LONG_PROGRAM = "eggs_per_row = 7\nrows = 6\ntotal = eggs_per_row * rows\nprint(total)\n"  # 10 tokens, scripted


@needs_sandbox
async def test_a_program_counts_against_the_thinking_budget_and_one_it_cuts_is_not_run() -> None:
    backend = ScriptedBackend(respond=scripted({"direct": "40", "program": "42"}, code={"greedy": LONG_PROGRAM}))
    done = await collect(run(backend, thinking(budget=4)))
    asked = [(agent_of(r), r.params.max_tokens) for r in backend.requests]
    assert asked[0] == ("program", 4)  # capped at the budget, not the program's own 512
    assert [who for who, _ in asked] == ["program", "direct"]  # no repair: the chain has nothing left to reason
    assert done.usage.tool_calls == 0  # an unfinished program is not run
    assert "eggs_per_row = 7" in done.reasoning and done.text == "The answer is 40."
    assert done.usage.reasoning_tokens == 4  # all the reasoning there was: the budget


@needs_sandbox
async def test_think_longer_lets_a_program_the_budget_cut_go_on() -> None:
    req = thinking(budget=4)
    inner = scripted({"direct": "40", "program": "42"}, code={"greedy": LONG_PROGRAM})

    def respond(r: ChatRequest) -> Script:
        fence = PROMPTS["program"]["fence"]
        if r.prefill == fence:  # the client asks for more while the program is being written
            req.steer.think_longer(100)
            return LONG_PROGRAM
        if r.prefill.startswith(fence):  # the call that goes on from the cut
            return LONG_PROGRAM[len(r.prefill) - len(fence) :]
        return inner(r)

    backend = ScriptedBackend(respond=respond)
    done = await collect(run(backend, req))
    calls = [r for r in backend.requests if r.prefill.startswith(PROMPTS["program"]["fence"])]
    assert [r.params.max_tokens for r in calls] == [4, 100]  # the second call has what think_longer added
    assert calls[1].prefill.endswith("eggs_per_row = 7\nrows")  # and continues the code where the cut left it
    assert "eggs_per_row = 7\nrows = 6\ntotal" in done.reasoning  # one program, run whole
    assert done.text == "There are 42 eggs." and done.usage.tool_calls == 1


@needs_sandbox
async def test_a_program_that_prints_no_number_is_followed_by_a_chain() -> None:
    code = {"greedy": "print('The answer is pears.')\n"}
    backend = ScriptedBackend(respond=scripted({"direct": "42", "program": "42"}, code=code))
    done = await collect(run(backend, thinking()))
    assert done.text == "The answer is 42." and "pears" in done.reasoning


@needs_sandbox
async def test_a_program_that_prints_prose_is_followed_by_a_chain() -> None:
    story = ChatRequest("m", (Message("user", "Write a short story about 3 cats and 2 dogs."),))
    code = {"greedy": "print('Three cats and two dogs met by the river, and by evening there were 5 friends.')\n"}
    backend = ScriptedBackend(respond=scripted({"direct": "5", "program": "5"}, code=code))
    done = await collect(run(backend, thinking(story)))
    assert [agent_of(r) for r in backend.requests] == ["program", "direct", "direct"]  # the chain writes the reply
    assert done.text == "The answer is 5." and "by the river" in done.reasoning


def test_numbers_read_off_an_attachment_are_not_the_users_own() -> None:
    picture = vision.Picture("PNG", 640, 480, "RGB", 0.9, None)
    words = [vision.Word(t, x, 10, x + 20, 20, 0.99) for t, x in (("42", 0), ("87", 40), ("23", 80))]
    chart = vision.describe(picture, words, "Image 1")
    blank = vision.describe(picture, [], "Image 2")
    ask = "Which fruit sold the most in this chart, and how many units?"
    assert own_words(f"{chart}\n{blank}\n{ask}").strip() == ask
    assert not quantitative(own_words(f"{chart}\n{ask}")) and quantitative(f"{chart}\n{ask}")
    spoken = "[Audio 1, 3.0 s, en; you cannot hear it, this is its transcript by speech recognition:]\n"
    assert own_words(spoken + "What is 6 times 7?") == spoken + "What is 6 times 7?"  # said: the user's own


async def test_thinking_writes_a_program_only_for_what_one_can_settle() -> None:
    capital = ChatRequest("m", (Message("user", "Which city is the capital of Australia?"),))
    backend = ScriptedBackend(respond=lambda r: "Canberra")
    done = await collect(run(backend, thinking(capital)))
    assert done.text == "Canberra" and len(backend.requests) == 2  # reasoning and answer: no program
    lettered = ChatRequest("m", (Message("user", "What is 6 times 7?\nA. 42\nB. 48\nAnswer with the letter."),))
    backend = ScriptedBackend(respond=lambda r: "A")
    await collect(run(backend, thinking(lettered)))
    assert "program" not in [agent_of(r) for r in backend.requests]


async def test_instant_cuts_a_loop_and_keeps_what_came_before() -> None:
    loop = "The total is 12 apples. " + "So the answer is 12. " * 60
    backend = ScriptedBackend(loop)
    done = await collect(run(backend, resolve(ARITHMETIC, ModeSettings(), mode="instant")))
    assert done.text.startswith("The total is 12 apples. So the answer is 12.")
    assert done.usage.completion_tokens < 5 * 60  # stopped well before the end of the script
    assert backend.requests[0].messages == ARITHMETIC.messages  # Instant sends the message as it is


async def _replay(events: list[Any]) -> Any:
    for e in events:
        yield e


def test_progress_events_are_plain_values() -> None:
    e = AgentEvent("auto", None, {"escalated": False})
    assert e.kind == "auto" and not isinstance(e, ReasoningDelta)
