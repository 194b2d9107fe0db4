import itertools

import pytest

from ponder.formats.reasoning import ThinkSplitter

STREAM = "<think>add 2 and 2</think>\n\nThe answer is 4."


def run(pieces: list[str], **kw: bool) -> tuple[str, str]:
    s = ThinkSplitter(**kw)
    reasoning, answer = [], []
    for p in pieces:
        r, a = s.feed(p)
        reasoning.append(r)
        answer.append(a)
    r, a = s.flush()
    return "".join(reasoning) + r, "".join(answer) + a


def test_whole_text() -> None:
    assert run([STREAM]) == ("add 2 and 2", "The answer is 4.")


def test_every_two_and_three_way_cut_gives_the_same_split() -> None:
    n = len(STREAM)
    for i, j in itertools.combinations(range(1, n), 2):
        assert run([STREAM[:i], STREAM[i:j], STREAM[j:]]) == ("add 2 and 2", "The answer is 4."), (i, j)


def test_one_character_at_a_time_never_leaks_a_marker() -> None:
    s = ThinkSplitter()
    for ch in STREAM:
        r, a = s.feed(ch)
        assert "<" not in r + a or a.endswith("4.")


def test_output_that_starts_inside_the_block() -> None:
    # DeepSeek-R1 style: the template opened <think>, the model only closes it.
    assert run(["add", " 2 and 2</th", "ink>\n\n4"], in_reasoning=True) == ("add 2 and 2", "4")


def test_no_markers_is_all_answer_and_a_lone_lt_is_released() -> None:
    assert run(["x < y", " and a <b>tag</b>"]) == ("", "x < y and a <b>tag</b>")


def test_unclosed_reasoning_stays_reasoning() -> None:
    assert run(["<think>still going <", "/thi"]) == ("still going </thi", "")


@pytest.mark.parametrize("cut", range(1, len("</think>")))
def test_close_marker_cut_anywhere(cut: int) -> None:
    tag = "</think>"
    assert run(["<think>r", tag[:cut], tag[cut:] + "a"]) == ("r", "a")
