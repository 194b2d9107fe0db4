from ponder.formats.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    return "".join(matcher.feed(p) for p in pieces) + matcher.flush()


def test_no_stops_passes_text_through_unchanged() -> None:
    m = StopMatcher([])
    assert m.feed("abc") == "abc"
    assert m.flush() == ""


def test_stop_inside_one_piece_cuts_before_it() -> None:
    m = StopMatcher(["END"])
    assert feed_all(m, ["hello END world"]) == "hello "
    assert m.stopped


def test_stop_split_across_pieces_is_caught_and_never_emitted() -> None:
    m = StopMatcher(["\nUser:"])
    emitted = [m.feed(p) for p in ["Sure.", "\n", "Us", "er", ":", " more"]]
    assert "".join(emitted) == "Sure."
    assert m.stopped
    assert all("\n" not in e for e in emitted)


def test_held_text_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("a ST") == "a "
    assert m.feed("ART") == "START"
    assert not m.stopped


def test_partial_stop_at_end_of_stream_is_flushed() -> None:
    m = StopMatcher(["STOP"])
    assert m.feed("ends with ST") == "ends with "
    assert m.flush() == "ST"


def test_earliest_of_several_stops_wins() -> None:
    m = StopMatcher(["bb", "a"])
    assert feed_all(m, ["xxbbya"]) == "xx"
