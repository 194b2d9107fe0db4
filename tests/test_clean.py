"""The answer cleaner: `\\boxed` and `\\fbox` wrappers dropped with their content kept,
and a prompt echoed at the answer's start dropped, however the stream is cut."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ponder.formats.clean import LEAD_LIMIT, AnswerCleaner, clean
from tests.streams import cut_up

PROPERTY = settings(max_examples=300, deadline=None)
ECHOES = ("the result of your reasoning above", "Do not repeat the working")
PROMPT = "Now reply to me with the result of your reasoning above. Do not repeat the working."


def streamed(pieces: list[str], echoes: tuple[str, ...] = ()) -> str:
    cleaner = AnswerCleaner(echoes)
    return "".join(cleaner.feed(p) for p in pieces) + cleaner.flush()


def every_cut(text: str) -> list[list[str]]:
    """`text` cut in two at each place, and one character at a time."""
    return [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The answer is \\boxed{18}.", "The answer is 18."),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{x^{2^{3}}} and \\boxed{y}", "x^{2^{3}} and y"),
        ("\\boxed 5 apples", "5 apples"),
        ("\\boxed5", "5"),
        ("\\boxed {7}", "7"),
        ("\\boxed\\pi", "\\pi"),
        ("\\fbox{done}", "done"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("$\\boxed{18}$", "$18$"),
        ("**Final Answer**\n\\[\n\\boxed{\\text{Paris}}\n\\]", "**Final Answer**\n\\[\n\\text{Paris}\n\\]"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces are content, not the end
        ("\\boxed{a \\\\ b}", "a \\\\ b"),
        ("a \\\\boxed{3}", "a \\\\boxed{3}"),  # a line break, then the word "boxed"
        ("\\boxedx{1} \\fboxsep=2pt \\boxes", "\\boxedx{1} \\fboxsep=2pt \\boxes"),  # other commands
        ("}{ stray braces }", "}{ stray braces }"),
        ("open \\boxed{12", "open 12"),  # never closed: its content all the same
        ("open \\boxed{\\frac{1}{", "open \\frac{1}{"),
        ("ends with \\boxed", "ends with "),
        ("ends with \\boxed  ", "ends with "),
        ("ends with \\bo", "ends with \\bo"),
        ("ends with \\", "ends with \\"),
        ("", ""),
    ],
)
def test_wrappers_go_and_their_content_stays(text: str, want: str) -> None:
    assert clean(text) == want
    for pieces in every_cut(text):
        assert streamed(pieces) == want, pieces


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("He will be \\boxed{21} years old in 3 years.", "He will be 21 years old in 3 years.\n\n**Answer: 21**"),
        ("It costs \\boxed{$1,200$} for 2 people.", "It costs $1,200$ for 2 people.\n\n**Answer: 1,200**"),
        ("She needs \\(\\boxed{18}\\) more to reach 72.", "She needs \\(18\\) more to reach 72.\n\n**Answer: 18**"),
        ("So she made \\boxed{18} vlogs.", "So she made 18 vlogs."),  # it ends on the number already
        ("The answer is \\boxed{18.0}, not 18.", "The answer is 18.0, not 18."),  # the same number
        ("\\boxed{\\frac{1}{2}} of the 4 cakes", "\\frac{1}{2} of the 4 cakes"),  # LaTeX: not restated
        ("\\boxed{Paris}, in 1900", "Paris, in 1900"),  # words: not restated
        ("Write `\\boxed{3}` for 4", "Write `\\boxed{3}` for 4"),  # a box left in code marks it still
        ("\\boxed{5} at first, then \\fbox {7} in 2 steps", "5 at first, then 7 in 2 steps\n\n**Answer: 7**"),
    ],
)
def test_a_boxed_number_the_answer_does_not_end_on_is_restated(text: str, want: str) -> None:
    assert clean(text) == want
    for pieces in every_cut(text):
        assert streamed(pieces) == want, pieces


@pytest.mark.parametrize(
    "text",
    [
        "Write `\\boxed{x}` to box an answer.",
        "In LaTeX:\n\n```latex\n\\[ \\boxed{E = mc^2} \\]\n```\n",
        "Use ``\\fbox{`text`}``, like this.",
        "~~~\nnot a code fence here, \\boxed{1}\n~~~",  # only backticks are followed
    ],
)
def test_code_is_left_as_written(text: str) -> None:
    want = text if "~~~" not in text else text.replace("\\boxed{1}", "1")
    assert clean(text) == want
    for pieces in every_cut(text):
        assert streamed(pieces) == want


def test_after_code_boxes_are_unwrapped_again() -> None:
    text = "Type `\\boxed{x}`:\n```\n\\boxed{y}\n```\nso the answer is \\boxed{7}."
    assert clean(text) == "Type `\\boxed{x}`:\n```\n\\boxed{y}\n```\nso the answer is 7."


def test_only_a_possible_command_is_held_back() -> None:
    c = AnswerCleaner()
    assert c.feed("The answer is ") == "The answer is "
    assert c.feed("\\bo") == ""  # may become \boxed
    assert c.feed("xed") == ""  # \boxed, or \boxedx: the next character says
    assert c.feed("{1") == "1"  # the content streams as it comes
    assert c.feed("8") == "8"
    assert c.feed("} apples.") == " apples."
    assert c.feed(" \\frac") == " \\frac"  # \f could have been \fbox; \fr cannot
    assert c.feed("{a}{b}") == "{a}{b}"
    assert c.flush() == ""


def test_flush_releases_what_turned_out_to_be_text() -> None:
    c = AnswerCleaner()
    assert c.feed("costs \\") == "costs "
    assert c.flush() == "\\"


# --- echoes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (PROMPT + "\n\nThe answer is \\boxed{18}.", "The answer is 18."),
        ("Here is the result of your reasoning above:\n\\boxed{18}", "18"),
        ("**The result of your reasoning above is:** 18 apples.", "18 apples."),
        ("  THE RESULT OF YOUR\tREASONING ABOVE. 18", "18"),  # any case, any spacing
        ("Now reply with the result of your reasoning above.\n- 18\n- 19", "- 18\n- 19"),
        # kept: the sentence goes on past the phrase, and may be the answer itself
        ("The result of your reasoning above is 18. Done.", "The result of your reasoning above is 18. Done."),
        ("Based on the result of your reasoning above, 18.", "Based on the result of your reasoning above, 18."),
        # kept: not the first sentence
        (
            "Sure. Here is the result of your reasoning above: 18",
            "Sure. Here is the result of your reasoning above: 18",
        ),
        # kept: nothing else would be left
        (PROMPT, PROMPT),
        (PROMPT + "\n\n", PROMPT + "\n\n"),
        ("The answer is 18.", "The answer is 18."),
        ("", ""),
    ],
)
def test_a_leading_echo_of_the_prompt_goes(text: str, want: str) -> None:
    assert clean(text, ECHOES) == want
    for pieces in every_cut(text):
        assert streamed(pieces, ECHOES) == want


def test_echoes_hold_back_the_first_sentence_only() -> None:
    c = AnswerCleaner(ECHOES)
    assert c.feed("The answer") == ""
    assert c.feed(" is 18.") == ""  # "18." may yet be "18.5"
    assert c.feed(" Then") == "The answer is 18. Then"
    assert c.feed(" more.") == " more."


def test_a_first_sentence_too_long_to_be_an_echo_is_released() -> None:
    c = AnswerCleaner(ECHOES)
    assert c.feed("x" * LEAD_LIMIT) == ""
    assert c.feed("y") == "x" * LEAD_LIMIT + "y"


def test_without_echoes_nothing_is_held() -> None:
    assert AnswerCleaner().feed("The result of your reasoning above") == "The result of your reasoning above"
    assert AnswerCleaner(["", "  "]).feed("abc") == "abc"  # blank phrases are none


# --- properties ----------------------------------------------------------------------------

COMMANDS = ["\\boxed", "\\boxed{", "\\fbox{", "\\fbox ", "\\bo", "\\f", "\\", "\\\\", "\\{", "\\}"]
COMMANDS += ["\\frac{1}{2}", "\\fboxsep"]  # not ours
OTHERS = ["{", "}", "`", "```", "\n", " ", ". ", ": ", "x", "5", PROMPT, "the result of your reasoning above"]
BITS = COMMANDS + OTHERS
ANY = st.one_of(st.text(), st.lists(st.one_of(st.text(max_size=4), st.sampled_from(BITS)), max_size=16).map("".join))


@PROPERTY
@given(cut_up(ANY), st.sampled_from([(), ECHOES]))
@example(("\\boxed{a}`", ["\\boxed{a", "}`"]), ())
def test_the_same_answer_wherever_the_stream_is_cut(cut: tuple[str, list[str]], echoes: tuple[str, ...]) -> None:
    text, pieces = cut
    assert streamed(pieces, echoes) == clean(text, echoes)


@PROPERTY
@given(cut_up(st.text().map(lambda t: t.replace("\\", ""))))
def test_text_without_a_backslash_passes_through_at_once(cut: tuple[str, list[str]]) -> None:
    _, pieces = cut
    c = AnswerCleaner()
    assert [c.feed(p) for p in pieces] == pieces
    assert c.flush() == ""


PLAIN = st.text(st.characters(exclude_characters="\\`{}"), max_size=6)
Pair = tuple[str, str]  # the text written, and the text the reader should get


def joined(pairs: list[Pair]) -> Pair:
    return "".join(w for w, _ in pairs), "".join(r for _, r in pairs)


def extend(inner: st.SearchStrategy[Pair]) -> st.SearchStrategy[Pair]:
    wrapped = st.tuples(st.sampled_from(["\\boxed{", "\\fbox{", "\\boxed {", "\\boxed\n{"]), inner)
    return st.one_of(
        st.lists(inner, max_size=4).map(joined),
        inner.map(lambda p: ("{" + p[0] + "}", "{" + p[1] + "}")),
        wrapped.map(lambda w: (w[0] + w[1][0] + "}", w[1][1])),
    )


BARE = st.tuples(st.sampled_from(["\\boxed ", "\\boxed", "\\fbox  "]), st.from_regex(r"[0-9]+", fullmatch=True))
BOXED = st.recursive(st.one_of(PLAIN.map(lambda t: (t, t)), BARE.map(lambda b: ("".join(b), b[1]))), extend)


@PROPERTY
@given(BOXED, st.data())
@example(("\\boxed{\\boxed{}}", ""), None)
def test_the_content_of_every_box_is_kept(pair: Pair, data: st.DataObject | None) -> None:
    text, want = pair
    got = clean(text)
    assert got == want or (got.startswith(want) and RESTATED.fullmatch(got[len(want) :])), got
    if data is not None:
        _, pieces = data.draw(cut_up(st.just(text)))
        assert streamed(pieces) == got


RESTATED = re.compile(r"\n\n\*\*Answer: -?\$?\d[\d,]*(?:\.\d+)?\*\*")  # a boxed number the text ends on another after


@PROPERTY
@given(ANY)
def test_echoes_only_ever_drop_the_start(text: str) -> None:
    plain, trimmed = clean(text), clean(text, ECHOES)
    assert plain.endswith(trimmed)
    if trimmed != plain:
        dropped = " ".join(plain[: len(plain) - len(trimmed)].lower().split())
        assert any(" ".join(e.lower().split()) in dropped for e in ECHOES)
        assert trimmed.strip()
