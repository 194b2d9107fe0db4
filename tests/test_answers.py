"""`ponder.modes.answers`: the letter a multiple-choice answer commits to (`choice`), and
`extract`, which votes and probes compare: letters for lettered options, numbers as
before."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ponder.modes.answers import choice, extract, stated

CHOICES = [
    ("The answer is (B)", "b"),
    ("The answer is B.", "b"),
    ("B) Paris", "b"),
    ("B. Paris", "b"),
    ("b) paris", "b"),
    ("(C) The moon", "c"),
    ("**B**", "b"),
    ("**B.** Paris is the capital.", "b"),
    ("\\boxed{B}", "b"),
    ("\\boxed{\\text{C}}", "c"),
    ("So the final answer is $\\boxed{D}$.", "d"),
    ("Answer: b", "b"),
    ("**Answer:** D", "d"),
    ("Final answer: (A)", "a"),
    ("B", "b"),
    ("  c\n", "c"),
    ("(C)", "c"),
    ("[D]", "d"),
    ("A.", "a"),
    ("the correct option is **D**", "d"),
    ("The best choice is C because the others are myths.", "c"),
    ("Option A is correct.", "a"),
    ("A is correct", "a"),
    ("I think B is right", "b"),
    ("I'd go with C", "c"),
    ("A cat sat on the mat, so the answer is C.", "c"),
    ("A cat sat on the mat. C", "c"),
    ("The answer is not A, it's B", "b"),
    ("The answer is a bit tricky: C", "c"),
    ("Looking at the options:\nA. 5 apples\nB. 6 apples\nC. 7 apples\nSo C", "c"),
    ("<think>Maybe A? No.</think>B", "b"),
    ("Reply with ONLY the letter of the correct answer (e.g. 'A').\nD", "d"),
    ("In the U.S. it is D", "d"),
]

NO_CHOICE = [
    "A cat sat on the mat.",
    "I think so.",
    "Answer: A cat",
    "",
    "The answer is E",  # out of range for four options
    "E) none of these",
    "Nobody knows.",
]


@pytest.mark.parametrize(("text", "letter"), CHOICES)
def test_choice_reads_the_letter_an_answer_commits_to(text: str, letter: str) -> None:
    assert choice(text, 4) == letter


@pytest.mark.parametrize("text", NO_CHOICE)
def test_choice_is_none_when_no_option_is_named(text: str) -> None:
    assert choice(text, 4) is None


def test_choice_keeps_to_the_range_and_can_match_an_options_own_text() -> None:
    assert choice("The answer is E", 5) == "e" and choice("E", 4) is None
    assert choice("The answer is B, not G.", 3) == "b"
    assert choice("Unknown.", 3, ("Yes.", "Unknown.", "No.")) == "b"
    assert choice("Maybe.", 3, ("Yes.", "Unknown.", "No.")) is None
    assert choice("B", 0) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (B)", "b"),
        ("B) Paris", "b"),
        ("**B**", "b"),
        ("\\boxed{B}", "b"),
        ("Answer: b", "b"),
        ("B", "b"),
        ("The correct option is D.", "d"),
        ("C.\nBecause the others are myths.", "c"),
        ("The answer is B because the others are myths.", "b"),
        ("The answer is A because it says so.", "a"),
        ("The answer is A total of 18", "18"),
        ("The answer is I think 18", "18"),
        ("The answer is -1.", "-1"),
        # numbers, as before
        ("The answer is 18.", "18"),
        ("\\boxed{18}", "18"),
        ("So she has $1,000 left.", "1000"),
        ("Answer: x = 5", "5"),
        ("The answer is a total of 12", "12"),
        ("answer is 3.50", "3.5"),
        ("So the total is 13.\n\nThe final answer is:\n\\[ 13 \\]", "13"),
        ("The final answer is: 7 apples", "7"),
        ("The final answer:\n$42$", "42"),
        ("A total of 18 apples.", "18"),
        ("First, 5 + 3 = 8.\nThen 8 * 2 = 16.", "16"),
        ("a) 5 + 3 = 8\nb) 8 * 2 = 16", "16"),
        ("A cat sat on the mat.", None),
        ("Nothing to see.", None),
    ],
)
def test_extract_gives_letters_for_lettered_options_and_numbers_as_before(text: str, expected: str | None) -> None:
    assert extract(text) == expected


def test_a_listing_of_the_options_commits_to_none_of_them() -> None:
    assert extract("A. 5 apples\nB. 6 apples") != "a"
    assert stated("So the correct option is B.") == "b" and stated("B) Paris") is None


LETTERS = st.integers(min_value=2, max_value=10).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n - 1))
)
WORDS = st.text(alphabet=string.ascii_lowercase + " ", min_size=0, max_size=30)
FORMS = [
    "The answer is ({L})",
    "The answer is {L}.",
    "{L}) {W}",
    "{L}. {W}",
    "**{L}**",
    "\\boxed{{{L}}}",
    "Answer: {l}",
    "{L}",
    "The correct option is {L}.",
]


@given(LETTERS, WORDS, st.sampled_from(FORMS), st.sampled_from(["", "A cat sat on the mat. ", "I think "]))
def test_every_committing_form_gives_the_letter(nk: tuple[int, int], words: str, form: str, lead: str) -> None:
    n, k = nk
    letter = chr(ord("A") + k)
    text = form.format(L=letter, l=letter.lower(), W=words)
    assert choice(text, n) == letter.lower()
    if not form.startswith("{L}"):
        text = lead + text
        assert choice(text, n) == letter.lower()
    assert extract(form.format(L=letter, l=letter.lower(), W=words)) == letter.lower()


@given(st.text(max_size=200), st.integers(min_value=1, max_value=26))
def test_choice_is_none_or_a_letter_in_range(text: str, n: int) -> None:
    got = choice(text, n)
    assert got is None or "a" <= got <= chr(ord("a") + n - 1)


@given(st.integers(min_value=-(10**6), max_value=10**6), st.sampled_from(["The answer is {}.", "\\boxed{{{}}}",
                                                                            "So the total is {} apples."]))  # fmt: skip
def test_numbers_are_still_extracted(k: int, form: str) -> None:
    assert extract(form.format(k)) == str(k)
