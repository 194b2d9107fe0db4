"""The loop guard: degenerate repetition caught early, and the text before it kept;
long answers that repeat a structure (lists, tables, code, derivations) left alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.formats.loops import CODE_COVER, COVER, EVERY, LoopGuard
from tests.streams import split_at

PROPERTY = settings(max_examples=200, deadline=None)


def stream(text: str, step: int = 4) -> tuple[LoopGuard, int | None]:
    """Feed `text` token-sized; the guard, and how far in it said it looped (None: never)."""
    guard = LoopGuard()
    for i in range(0, len(text), step):
        if guard.feed(text[i : i + step]):
            return guard, i + step
    return guard, None


# --- loops -------------------------------------------------------------------------------

INTRO = "We need the total number of apples. Tom has 7 and Ann has 11, so 7 + 11 = 18.\n\n"
THREE_LINES = "Let me double-check the sum.\n7 + 11 = 18\nSo the answer is 18.\n"

LOOPS = [
    pytest.param(INTRO, "The answer is 18. ", INTRO + "The answer is 18. ", id="sentence"),
    pytest.param(INTRO + "So the answer is ", "\\boxed{18}", INTRO + "So the answer is \\boxed{18}", id="boxed"),
    pytest.param(INTRO, THREE_LINES, INTRO + THREE_LINES, id="three-lines"),
    pytest.param(INTRO + "The total is ", "1", INTRO + "The total is 1", id="digits"),
    pytest.param(INTRO, "18\n", INTRO + "18\n", id="short-line"),
    # the text before the loop ends as its unit does, so the repetition begins there: the unit once from
    # there, to the end of a line (not "... So the answer is 1")
    pytest.param(
        "First:\nSo the answer is 18.\n",
        THREE_LINES,
        "First:\nSo the answer is 18.\nLet me double-check the sum.\n7 + 11 = 18\n",
        id="intro-ends-like-the-unit",
    ),
    # the first copy differs ("Thus, the"): it is kept whole, with the first exact copy after it
    pytest.param(
        "Thus, the answer is 18. ",
        "The answer is 18. ",
        "Thus, the answer is 18. The answer is 18. ",
        id="first-copy-differs",
    ),
]


@pytest.mark.parametrize(("before", "unit", "settled"), LOOPS)
def test_a_loop_is_caught_soon_and_the_text_before_it_kept(before: str, unit: str, settled: str) -> None:
    text = before + unit * (4000 // len(unit))
    guard, at = stream(text)
    assert at is not None, "never caught"
    assert at - len(before) <= max(COVER, 4 * len(unit)) + EVERY + 4  # caught within a look of the threshold
    assert guard.settled_text == settled
    assert guard.feed("more of it") and guard.looped  # and it stays caught
    assert guard.settled_text == settled
    assert unit.strip()[:10] in guard.reason


def test_a_loop_that_varies_but_keeps_a_line_is_caught_by_the_line() -> None:
    checks = [
        f"Let me verify again: 7 + 11 = {18 + (k * 7) % 3}, checked {k} times.\nThe answer is 18.\n" for k in range(40)
    ]
    text = INTRO + "".join(checks)
    guard, at = stream(text)
    assert at is not None and at < len(INTRO) + sum(map(len, checks[:13]))
    assert guard.settled_text == INTRO + checks[0]
    assert "The answer is 18." in guard.reason


def test_a_loop_in_code_needs_longer_before_it_counts() -> None:
    row = "    grid.append([0, 0, 0, 0, 0, 0, 0, 0])\n"
    fenced = "Start with an empty grid:\n\n```python\ngrid = []\n"
    assert stream(fenced + row * (CODE_COVER // len(row) - 2))[1] is None
    guard, at = stream(fenced + row * 100)
    assert at is not None and guard.settled_text == fenced + row


def test_a_run_of_blank_lines_or_dots_is_a_loop_once_long() -> None:
    assert stream("Done.\n" + "\n" * (CODE_COVER - 100))[1] is None
    assert stream("Done.\n" + "\n" * 2000)[0].settled_text == "Done.\n"  # its newline is the unit once
    assert stream("Wait" + "." * 2000)[0].looped


def test_before_a_loop_the_settled_text_is_all_of_it() -> None:
    guard = LoopGuard()
    assert not guard.feed("The answer ")
    assert not guard.feed("is 18.")
    assert guard.settled_text == "The answer is 18."
    assert LoopGuard().settled_text == ""


# --- long answers that are not loops ---------------------------------------------------------

NUMBERED = "Here are the planets' mean distances from the Sun:\n\n" + "".join(
    f"{i}. **{name}**: about {au} AU ({km} million km), one orbit every {days} Earth days.\n"
    for i, (name, au, km, days) in enumerate(
        [
            ("Mercury", 0.39, 58, 88),
            ("Venus", 0.72, 108, 225),
            ("Earth", 1.0, 150, 365),
            ("Mars", 1.52, 228, 687),
            ("Jupiter", 5.2, 778, 4333),
            ("Saturn", 9.5, 1433, 10759),
            ("Uranus", 19.2, 2872, 30687),
            ("Neptune", 30.1, 4495, 60190),
        ]
        * 3,
        1,
    )
)

TABLE = "| n | n² | n³ | prime? |\n|---|---|---|---|\n" + "".join(
    f"| {n} | {n * n} | {n**3} | {'yes' if all(n % d for d in range(2, n)) and n > 1 else 'no'} |\n"
    for n in range(1, 61)
)
WIDE_RULE = "| " + " | ".join(f"col{i}" for i in range(30)) + " |\n|" + "---|" * 30 + "\n" + "| 0 " * 30 + "|\n"

CODE = (
    """Here is a test module for it:

```python
import unittest


class TestParse(unittest.TestCase):
"""
    + "".join(
        f'''    def test_{name}(self):
        result = parse("{text}")
        expected = {want!r}
        self.assertEqual(result, expected)
        self.assertEqual(result, expected)

'''
        for name, text, want in [
            ("empty", "", []),
            ("one", "1", [1]),
            ("two", "1,2", [1, 2]),
            ("spaces", "1, 2", [1, 2]),
            ("negative", "-1", [-1]),
            ("trailing", "1,", [1]),
            ("many", "1,2,3,4", [1, 2, 3, 4]),
            ("zero", "0", [0]),
            ("big", "10**9", [10**9]),
            ("nested", "[1]", [[1]]),
        ]
    )
    + """```

Run it with `python -m unittest`.
"""
)

INDENTED_CODE = "\n".join(
    f"    @property\n    def {name}(self) -> int:\n        return self._{name}\n" for name in "abcdefghijklmnop"
)

DERIVATION = (
    "Multiply each term by 4:\n\n"
    + "".join(f"{n} * 4 = {n * 4}\n" for n in range(1, 41))
    + ("\nThen check each:\n\n" + "".join(f"\\[ {n} \\times 4 = {4 * n} \\]\n" for n in range(1, 41)))
)

PROSE = """Photosynthesis is the process by which green plants, algae and some bacteria turn light
into chemical energy. It takes place mostly in the leaves, inside chloroplasts, small organelles
that hold the green pigment chlorophyll. Chlorophyll absorbs red and blue light and reflects green,
which is why leaves look green to us.

The process has two stages. In the light-dependent reactions, which happen in the thylakoid
membranes, light energy splits water molecules. This releases oxygen as a by-product and produces
two energy carriers, ATP and NADPH. In the second stage, the Calvin cycle, which runs in the stroma,
the plant uses that ATP and NADPH to fix carbon dioxide from the air into three-carbon sugars.
Those sugars are then built into glucose, sucrose and starch.

The overall reaction is often summarised as six molecules of carbon dioxide and six of water
giving one molecule of glucose and six of oxygen. The summary hides a great deal: the Calvin cycle
alone involves more than a dozen enzymes, and the most abundant of them, RuBisCO, is famously slow
and sometimes grabs oxygen instead of carbon dioxide, wasting energy in what is called
photorespiration. Plants in hot, dry climates have evolved workarounds: C4 plants such as maize
concentrate carbon dioxide around RuBisCO, and CAM plants such as cacti open their pores only at
night to save water.

Photosynthesis matters far beyond the plant. It is the source of almost all the oxygen in the
atmosphere and, directly or indirectly, of almost all the food that animals eat. The fossil fuels
we burn today are the remains of organisms that captured sunlight millions of years ago. Improving
its efficiency in crops is one of the long-standing goals of agricultural research, because even
a few percent more could mean noticeably larger harvests on the same land.
"""

SONG = (
    "Verse:\nThe morning light is on the hill,\nThe river runs and never still.\n\n"
    "Chorus:\nOh, carry me home, carry me home,\nAcross the fields where the wild winds roam.\n"
    "Oh, carry me home, carry me home,\nI'll never again be alone.\n\n"
) * 4

NOT_LOOPS = {
    "numbered list": NUMBERED,
    "markdown table": TABLE,
    "wide table rule": WIDE_RULE,
    "code with similar lines": CODE,
    "indented code": INDENTED_CODE,
    "derivation": DERIVATION,
    "prose": PROSE * 3,
    "song with a chorus": SONG,
    "repeating decimal": "1/7 = 0." + "142857" * 16 + "...",
    "zero matrix": "```\n" + "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0],\n" * 20 + "```\n",
    "all of them": PROSE + NUMBERED + TABLE + CODE + DERIVATION + SONG,
}


@pytest.mark.parametrize("text", NOT_LOOPS.values(), ids=NOT_LOOPS.keys())
@pytest.mark.parametrize("step", [1, 4, 97])
def test_long_answers_with_repeated_structure_are_not_loops(text: str, step: int) -> None:
    guard, at = stream(text, step)
    assert at is None, guard.reason
    assert guard.settled_text == text


# --- properties --------------------------------------------------------------------------------


def verdict(pieces: list[str]) -> tuple[bool, str, str]:
    guard = LoopGuard()
    for piece in pieces:
        guard.feed(piece)
    return guard.looped, guard.settled_text, guard.reason


UNITS = st.text("ab1 .\n", min_size=1, max_size=30)
LOOPY = st.tuples(st.text("xyz .\n", max_size=80), UNITS, st.integers(0, 80), st.text("xyz \n", max_size=80)).map(
    lambda t: t[0] + t[1] * t[2] + t[3]
)
LINE = ["The answer is 18.", "- The answer is 18.", "Let me check it again now.", "    indented code", "```", "x"]
LINES = st.lists(st.sampled_from(LINE[:1] * 12 + LINE), max_size=60).map("\n".join)  # mostly one line


@PROPERTY
@given(st.one_of(LOOPY, LINES, st.text()), st.data())
def test_the_verdict_does_not_depend_on_where_the_stream_is_cut(text: str, data: st.DataObject) -> None:
    points = data.draw(st.one_of(st.sets(st.integers(0, len(text)), max_size=20), st.just(set(range(len(text))))))
    assert verdict(split_at(text, points)) == verdict([text])


def root(unit: str) -> str:
    """The shortest string that `unit` is a power of."""
    return next(unit[:d] for d in range(1, len(unit) + 1) if unit[:d] * (len(unit) // d) == unit)


@PROPERTY
@given(st.text("xyz.\n", max_size=80), st.text("ab1", min_size=1, max_size=20))
def test_a_repeated_unit_is_settled_to_the_text_before_and_the_unit_once(before: str, unit: str) -> None:
    before += "."  # a mark that is not in the unit, where the repetition must begin
    text = before + unit * (400 // len(unit) + 1)
    looped, settled, _ = verdict([text])
    assert looped
    assert settled == before + root(unit)
