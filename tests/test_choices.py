"""Multiple choice answered two ways (`modes.choices`): the options read out of a
question, the letter's and the words' distributions and their product, and
Contemplating and Auto deciding by them on the scripted backend."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ponder.backends.scripted import Script, ScriptedBackend
from ponder.config import ModeSettings
from ponder.modes import ModeRequest, choices, resolve, run
from ponder.modes.prompts import load
from ponder.types import ChatRequest, Done, Message, TextDelta, TokenLogprob, Usage, collect

QUESTION = """Question: What happens if you swallow gum?

Choices:
A. It stays in your stomach for seven years.
B. It passes through your digestive system.
C. It wraps around your heart.

Reply with ONLY the letter of the correct answer (e.g. 'A'). Do not include any other text."""
CHAT = ChatRequest("m", (Message("system", "Be brief."), Message("user", QUESTION)))
STEM = "Question: What happens if you swallow gum?"


def test_options_and_the_question_are_read_out_of_a_message() -> None:
    found = choices.parse(QUESTION)
    assert found is not None and found.stem == STEM
    assert found.options == ("It stays in your stomach for seven years.", "It passes through your digestive system.",
                             "It wraps around your heart.")  # fmt: skip
    assert choices.parse("Pick one:\n(a) red\n(b) blue") == choices.Choices("Pick one:", ("red", "blue"))
    assert choices.parse("Is it red?\nA. red") is None  # one option is no choice
    assert choices.parse("A. red\nB. blue") is None  # no question before them
    assert choices.parse("Plan:\nA. shop\nthen\nB. cook") is None  # not a list of options
    assert choices.parse("Why?\nB. first\nA. second") is None  # letters out of order
    # lettered lists that ask for no choice are not multiple choice
    assert choices.parse("Here's my plan:\na. wake up\nb. run") is None
    assert choices.parse("1. Compare:\n  a) cats\n  b) dogs\n2. Explain the difference.") is None
    # a question after the options belongs to the question; a header line that is not "Choices:" stays
    after = choices.parse("Consider f(x) = x*x.\nA. f is even\nB. f is odd\nWhich is correct?")
    assert after is not None and after.stem == "Consider f(x) = x*x.\nWhich is correct?"
    kept = choices.parse("Consider f(x) = x*x.\nWhich of these is true:\nA. even\nB. odd")
    assert kept is not None and kept.stem.endswith("Which of these is true:")


def test_the_letter_distribution_comes_from_the_named_letter_and_the_product_pools() -> None:
    top = (("B", -0.2), ("A", -1.9), ("C", -4.0), ("The", -5.0))
    logprobs = [TokenLogprob("The", -0.1, ()), TokenLogprob(" answer", -0.1, ()), TokenLogprob(" is", -0.1, ()),
                TokenLogprob(" B", -0.2, top)]  # fmt: skip
    named = choices.named(QUESTION, "The answer is B", logprobs)
    assert named is not None and [round(p, 2) for p in named] == [0.15, 0.83, 0.02]
    assert choices.named(QUESTION, "The answer is B", []) is None  # no log-probabilities: nothing to say
    article = [
        TokenLogprob("It's", -0.1, ()),
        TokenLogprob(" a", -0.1, (("a", -0.1), ("the", -2.0))),
        TokenLogprob(" gum", -0.1, ()),
        TokenLogprob(",", -0.1, ()),
        TokenLogprob(" answer", -0.1, ()),
        TokenLogprob(" is", -0.1, ()),
        TokenLogprob(" A", -0.7, (("A", -0.7), ("B", -0.9), ("C", -3.0))),
    ]
    named_a = choices.named(QUESTION, "It's a gum, answer is A", article)  # the letter named, not the article
    assert named_a is not None and [round(p, 2) for p in named_a] == [0.52, 0.43, 0.05]
    assert choices.named("What is 2 + 2?", "4", logprobs) is None  # no options
    words = [0.6, 0.2, 0.2]
    flat = choices.pool([0.34, 0.33, 0.33], words, None)  # a letter that is a guess yields to the words
    assert flat.index(max(flat)) == 0 and sum(flat) == pytest.approx(1.0)
    sure = choices.pool([0.01, 0.98, 0.01], words)  # a sure letter carries the answer
    assert sure.index(max(sure)) == 1


def by_option(scores: dict[str, float], stem: str = STEM) -> ScriptedBackend:
    """A backend whose direct answer is scripted per test, and that scores each option
    by the first word it matches in `scores` (per token, one token a byte)."""

    def score(req: ChatRequest) -> list[float]:
        assert req.messages[-1] == Message("user", stem)  # the options are not shown
        value = next(v for word, v in scores.items() if word in req.prefill)
        return [value] * len(req.prefill.encode())

    return ScriptedBackend(score=score)


def contemplate(backend: ScriptedBackend, chat: ChatRequest = CHAT) -> ModeRequest:
    return replace(resolve(chat, ModeSettings(), mode="contemplating"), compression=False)


async def test_when_the_letter_and_the_words_agree_two_agents_settle_it() -> None:
    backend = by_option({"seven": -2.0, "passes": -0.5, "heart": -3.0})
    backend.enqueue("B")
    done = await collect(run(backend, contemplate(backend)))
    assert done.text == "B"
    assert [e.data["method"] for e in done.progress if e.kind == "agent.start"] == ["direct", "options"]
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    assert synthesis.data["method"] == "agreement"
    assert done.usage.completion_tokens == 1  # the options were read, not written


def sure(letter: str) -> Script:
    top = ((letter, -0.01), *((x, -6.0) for x in "ABC" if x != letter))
    return [TextDelta(letter, (TokenLogprob(letter, -0.01, top),)), Done("stop", Usage(1, 1))]


def chains_say(letter: str, backend: ScriptedBackend) -> ScriptedBackend:
    """Every Thinking chain reasons briefly, then names `letter`, sure of it."""
    think = load("thinking")
    backend.respond = lambda req: "Think it through." if req.prefill.startswith(think["open"]) else sure(letter)
    return backend


def unsure_a() -> Script:
    top = (("A", -0.9), ("B", -1.0), ("C", -1.5))
    return [TextDelta("A", (TokenLogprob("A", -0.9, top),)), Done("stop", Usage(1, 1))]


async def test_when_they_disagree_the_chains_decide_between_the_two() -> None:
    backend = chains_say("B", by_option({"seven": -2.0, "passes": -0.5, "heart": -3.0}))
    backend.enqueue(unsure_a())
    done = await collect(run(backend, contemplate(backend)))
    started = [(e.data["title"], e.data["method"]) for e in done.progress if e.kind == "agent.start"]
    assert started[:3] == [("direct", "direct"), ("options", "options"), ("chain", "chain")]  # then a styled chain
    chain = next(r for r in backend.requests if r.prefill.startswith(load("thinking")["open"]))
    notes = [style["note"] for style in load("contemplating")["styles"]]
    assert chain.params.temperature == 0.0 and not any(n in chain.messages[-1].content for n in notes)  # Thinking's
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    # the direct answer's A against the words' B: the chains name B
    assert synthesis.data["method"] == "vote" and synthesis.data["answer"] == "b", synthesis.data
    assert done.text == "B"
    # chains sure of C, which neither of the two named: they do not overrule both, and
    # the product of the two (an unsure A, words for B) decides
    backend = chains_say("C", by_option({"seven": -2.0, "passes": -0.5, "heart": -3.0}))
    backend.enqueue(unsure_a())
    done = await collect(run(backend, contemplate(backend)))
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    assert synthesis.data["method"] == "pooled" and synthesis.data["answer"] == "b", synthesis.data
    assert done.text == "B"  # in the form the model answered in: the letter alone


async def test_an_unsure_letter_against_the_words_yields_when_no_chain_can_run() -> None:
    backend = by_option({"seven": -2.0, "passes": -0.5, "heart": -3.0})
    backend.enqueue([TextDelta("A", (TokenLogprob("A", -0.9, (("A", -0.9), ("B", -1.0), ("C", -1.5))),)),
                     Done("stop", Usage(1, 1))])  # fmt: skip
    two = replace(contemplate(backend), agents=2)  # direct and options only: they are the last wave
    done = await collect(run(backend, two))
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    assert synthesis.data["method"] == "pooled" and synthesis.data["answer"] == "b"
    assert done.text == "B" and done.usage.completion_tokens == 1


async def test_an_answer_in_words_gets_the_option_with_its_letter() -> None:
    backend = by_option({"seven": -0.4, "passes": -2.5, "heart": -3.0})
    backend.enqueue("I would say it wraps around your heart, so C.")  # no log-probabilities: the words decide
    done = await collect(run(backend, contemplate(backend)))
    assert done.text == "A. It stays in your stomach for seven years."


async def test_auto_checks_an_unsure_lettered_answer_against_the_words_and_a_chain() -> None:
    backend = chains_say("B", by_option({"seven": -2.0, "passes": -0.5, "heart": -3.0}))

    def unsure(letter: str) -> Script:
        top = tuple((x, -1.0 - 0.1 * i) for i, x in enumerate((letter, "A", "B", "C", "D")))
        return [TextDelta(letter, (TokenLogprob(letter, top[0][1], top),)), Done("stop", Usage(1, 1))]

    backend.enqueue(unsure("C"))
    done = await collect(run(backend, replace(resolve(CHAT, ModeSettings(), mode="auto"), auto_confidence=5.0)))
    assert done.text == "B"
    assert [e.data["method"] for e in done.progress if e.kind == "agent.start"] == ["options", "chain", "chain"]
    assert next(e for e in done.progress if e.kind == "synthesis.start").data["method"] == "vote"


async def test_a_lettered_list_the_direct_answer_names_no_option_of_goes_on_to_chains() -> None:
    homework = ChatRequest("m", (Message("user", "Can you help with my homework?\na) Define entropy.\n"
                                                  "b) Give an example of it."),))  # fmt: skip
    backend = by_option({"Define": -1.0, "example": -2.0}, stem="Can you help with my homework?")
    backend.respond = lambda req: "Entropy measures how spread out energy is; ice melting is an example."
    done = await collect(run(backend, contemplate(backend, homework)))
    assert "options" in [e.data["method"] for e in done.progress if e.kind == "agent.start"]
    assert next(e for e in done.progress if e.kind == "synthesis.start").data["method"] != "pooled"
    assert done.text.startswith("Entropy")  # an answer in words, not an option's letter


def thinking_backend(direct: Script, chain: Script, scores: dict[str, float]) -> ScriptedBackend:
    """Thinking on the scripted backend: the first answer is `direct`; the reasoning
    ends at once, and the answer after it is `chain`."""
    backend = by_option(scores)
    think = load("thinking")

    def respond(req: ChatRequest) -> Script:
        if req.prefill.startswith(think["open"]):
            return [Done("stop", Usage(1, 0))]  # nothing more to think
        if req.messages[-1].content == QUESTION:  # the first answer: the request as the client sent it
            assert req.params.temperature == 0.0 and req.messages[0] == CHAT.messages[0]
            return direct
        assert req.messages[-1].content == think["answer_now"]
        return chain

    backend.respond = respond
    return backend


def flat(letter: str) -> Script:
    top = tuple((x, -1.0 - 0.05 * i) for i, x in enumerate((letter, "A", "B", "C")) if i == 0 or x != letter)
    return [TextDelta(letter, (TokenLogprob(letter, top[0][1], top),)), Done("stop", Usage(1, 1))]


async def test_thinking_lets_its_chain_decide_between_the_first_letter_and_the_options_words() -> None:
    words = {"seven": -2.0, "passes": -0.5, "heart": -3.0}
    thinking = replace(resolve(CHAT, ModeSettings(), mode="thinking"), compression=False)
    think = load("thinking")

    async def answer(direct: Script, chain: Script) -> tuple[str, bool]:
        backend = thinking_backend(direct, chain, words)
        done = await collect(run(backend, thinking))
        return done.text, any(r.prefill.startswith(think["open"]) for r in backend.requests)

    # the first answer and the words agree: no chain is written
    assert await answer(sure("B"), sure("C")) == ("B", False)
    # they differ: the chain decides between them, whichever it names
    assert await answer(flat("A"), sure("B")) == ("B", True)
    assert await answer(flat("A"), sure("A")) == ("A", True)
    # a chain sure of an option neither named does not overrule both: their product (words for B) decides
    assert await answer(flat("A"), sure("C")) == ("B", True)
    assert await answer(sure("A"), sure("C")) == ("A", True)  # a sure first letter carries that product
    # a first answer that names no option is no evidence: the chain's letter stands against the words
    assert await answer("It depends on the gum.", sure("C")) == ("C", True)
    # an answer that names no option stands
    assert (await answer(flat("A"), "It depends on the gum."))[0] == "It depends on the gum."
    # a first answer cut at its cap is working, and a letter in it no choice: the chain's stands
    cut = [TextDelta("Let us consider each choice. Choice A is"), Done("length", Usage(1, 9))]
    assert await answer(cut, sure("C")) == ("C", True)
    # an engine that cannot score: the chain alone
    plain = ScriptedBackend(respond=thinking_backend(flat("A"), flat("C"), words).respond)
    assert (await collect(run(plain, thinking))).text == "C"


async def test_thinking_gives_a_client_that_asked_the_log_probabilities_of_a_settled_first_answer() -> None:
    words = {"seven": -2.0, "passes": -0.5, "heart": -3.0}
    asked = replace(CHAT, params=replace(CHAT.params, logprobs=2))
    thinking = replace(resolve(asked, ModeSettings(), mode="thinking"), compression=False)
    done = await collect(run(thinking_backend(sure("B"), sure("C"), words), thinking))
    assert done.text == "B"  # settled by agreement, no chain
    assert [(lp.token, [t for t, _ in lp.top]) for lp in done.logprobs] == [("B", ["B", "A"])]  # the two asked for
    plain = replace(resolve(CHAT, ModeSettings(), mode="thinking"), compression=False)
    assert (await collect(run(thinking_backend(sure("B"), sure("C"), words), plain))).logprobs == []


async def test_a_chain_naming_neither_gets_the_likelier_of_the_two_not_the_products_top() -> None:
    import math

    # the words favour B; the first letter, A, is nearly a tie with C: the product's top is C,
    # which neither answer named
    words = {"seven": math.log(0.24), "passes": math.log(0.40), "heart": math.log(0.36)}
    top = (("A", math.log(0.54)), ("B", math.log(0.02)), ("C", math.log(0.44)))
    direct = [TextDelta("A", (TokenLogprob("A", top[0][1], top),)), Done("stop", Usage(1, 1))]
    thinking = replace(resolve(CHAT, ModeSettings(), mode="thinking"), compression=False)
    done = await collect(run(thinking_backend(direct, sure("C"), words), thinking))
    assert done.text == "A"  # of A and B, A is likelier by the product
    evidence = next(e for e in done.progress if e.kind == "evidence").data
    assert evidence["option_probability"] == pytest.approx(0.438, abs=0.01)  # A's share, not the top's (C)
    backend = chains_say("C", by_option(words))
    backend.enqueue(direct)
    done = await collect(run(backend, contemplate(backend)))
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    assert synthesis.data["method"] == "pooled" and synthesis.data["answer"] == "a", synthesis.data


async def test_a_chain_that_answers_in_the_options_words_counts_for_that_option() -> None:
    backend = by_option({"seven": -2.0, "passes": -0.5, "heart": -3.0})
    think = load("thinking")
    backend.respond = lambda req: "Think it through." if req.prefill.startswith(think["open"]) else \
        "It passes through your digestive system."  # fmt: skip
    backend.enqueue(sure("A"))  # a sure A against the words' B: the product says A
    done = await collect(run(backend, contemplate(backend)))
    synthesis = next(e for e in done.progress if e.kind == "synthesis.start")
    assert synthesis.data["method"] == "vote" and synthesis.data["answer"] == "b", synthesis.data
    assert done.text == "B"  # in the form the model answered in
