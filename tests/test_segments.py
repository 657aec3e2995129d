"""Subtitle segmentation from synthetic timed token streams."""

from __future__ import annotations

import random

import pytest

from voxtral_desktop.config import N_LEFT_PAD_TOKENS, STREAMING_PAD_ID, STREAMING_WORD_ID, TOKEN_MS
from voxtral_desktop.engine.events import TimedToken
from voxtral_desktop.engine.segments import Segment, build_segments

PAD = object()  # one [STREAMING_PAD] step
WORD = object()  # one [STREAMING_WORD] step
FIRST_STEP = 38  # the first output step at 480 ms: 1 + 32 + 6 prompt positions, minus one
DELAY_MS = 480


def stream(*items: object, first_step: int = FIRST_STEP) -> list[TimedToken]:
    """One token per item and step, as the session emits them.

    With the 480 ms delay, item i transcribes the speech [0.08 i, 0.08 (i + 1)] s: its step's
    time minus the delay.
    """
    out = []
    for i, item in enumerate(items):
        step = first_step + i
        time_s = (step + 1 - N_LEFT_PAD_TOKENS) * TOKEN_MS / 1000
        if item is PAD:
            out.append(TimedToken(STREAMING_PAD_ID, step, time_s, ""))
        elif item is WORD:
            out.append(TimedToken(STREAMING_WORD_ID, step, time_s, ""))
        else:
            assert isinstance(item, str)
            out.append(TimedToken(1000 + i, step, time_s, item))
    return out


def texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments]


def check_invariants(segments: list[Segment], duration_s: float | None = None) -> None:
    previous_end = 0.0
    for seg in segments:
        assert seg.text and seg.text == seg.text.strip()
        assert seg.start < seg.end
        assert seg.start >= previous_end
        assert seg.start >= 0
        if duration_s is not None:
            assert seg.end <= duration_s
        # Whole milliseconds, so SRT/VTT timestamps are exact.
        assert round(seg.start * 1000) == pytest.approx(seg.start * 1000, abs=1e-6)
        previous_end = seg.end


# ---- nothing to show ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tokens",
    [
        [],
        stream(PAD, PAD, PAD, WORD, PAD),
        stream(PAD, " ", "\n", PAD),  # whitespace-only text
        [TimedToken(2000, FIRST_STEP, 0.56, "")],  # a lone unfinished character
    ],
    ids=["empty", "silence", "whitespace", "partial-char"],
)
def test_no_text_gives_no_segments(tokens: list[TimedToken]) -> None:
    assert build_segments(tokens, DELAY_MS) == []


# ---- timing ---------------------------------------------------------------------------------
def test_one_sentence_timing() -> None:
    tokens = stream(PAD, PAD, " Hello", PAD, " world", ".", PAD, PAD)
    assert build_segments(tokens, DELAY_MS) == [Segment(0.16, 0.48, "Hello world.")]


def test_times_shift_with_the_delay_and_clamp_at_zero() -> None:
    tokens = stream(PAD, PAD, PAD, PAD, PAD, PAD, PAD, " Hi", first_step=FIRST_STEP + 6)  # 960 ms
    assert build_segments(tokens, 960) == [Segment(0.56, 0.64, "Hi")]
    # A delay longer than the audio before the token: the start clamps to 0, end stays > start.
    assert build_segments(stream(" Hi"), 960) == [Segment(0.0, 0.08, "Hi")]


def test_times_clamp_to_the_audio_duration() -> None:
    # Text decided while the stream was flushed lies in the right padding.
    tokens = stream(" one", PAD, PAD, " two", " three", ".", " Four", ".")
    segs = build_segments(tokens, DELAY_MS, duration_s=0.3)
    check_invariants(segs, duration_s=0.3)
    assert " ".join(texts(segs)) == "one two three. Four."


def test_unfinished_character_starts_at_its_first_byte() -> None:
    tokens = stream(" caf", PAD)
    tokens.append(TimedToken(1500, FIRST_STEP + 2, 0.72, ""))  # first byte of "é"
    tokens.append(TimedToken(1501, FIRST_STEP + 3, 0.80, "é"))
    assert build_segments(tokens, DELAY_MS) == [Segment(0.0, 0.32, "café")]


# ---- breaks ---------------------------------------------------------------------------------
def test_sentence_end_breaks() -> None:
    tokens = stream(" Hello", ".", " How", " are", " you", "?", PAD, " Fine", "!", " Thanks", "…", PAD)
    segs = build_segments(tokens, DELAY_MS)
    assert segs == [
        Segment(0.0, 0.16, "Hello."),
        Segment(0.16, 0.48, "How are you?"),
        Segment(0.56, 0.72, "Fine!"),
        Segment(0.72, 0.88, "Thanks…"),
    ]


def test_sentence_end_inside_quotes_breaks() -> None:
    tokens = stream(" He", " said", ' "', "Stop", '."', " Then", " left", ".")
    assert texts(build_segments(tokens, DELAY_MS)) == ['He said "Stop."', "Then left."]


def test_a_decimal_point_is_not_a_sentence_end() -> None:
    tokens = stream(" Pi", " is", " 3", ".", "14", " roughly", ".")
    assert texts(build_segments(tokens, DELAY_MS)) == ["Pi is 3.14 roughly."]


def test_cjk_sentence_end_breaks_without_spaces() -> None:
    tokens = stream("今日", "は", "晴れ", "。", "明日", "は", "雨", "。")
    assert texts(build_segments(tokens, DELAY_MS)) == ["今日は晴れ。", "明日は雨。"]


def test_a_long_pause_breaks() -> None:
    # 11 pads = 0.88 s > 0.8 s: a break; 10 pads = 0.80 s: not longer than pause_s.
    long_gap = build_segments(stream(" one", *[PAD] * 11, " two"), DELAY_MS)
    assert long_gap == [Segment(0.0, 0.08, "one"), Segment(0.96, 1.04, "two")]
    short_gap = build_segments(stream(" one", *[PAD] * 10, " two"), DELAY_MS)
    assert short_gap == [Segment(0.0, 0.96, "one two")]
    custom = build_segments(stream(" one", *[PAD] * 4, " two"), DELAY_MS, pause_s=0.3)
    assert texts(custom) == ["one", "two"]


def test_word_markers_are_word_boundaries() -> None:
    # Unspaced text (CJK) splits only where [STREAMING_WORD] marks a word.
    tokens = stream(WORD, "日本", "語", WORD, "東京", WORD, "音声", "認識")
    segs = build_segments(tokens, DELAY_MS, max_chars=4)
    assert texts(segs) == ["日本語", "東京", "音声認識"]
    check_invariants(segs)


def test_long_text_splits_at_word_boundaries_under_max_chars() -> None:
    words = [f" word{i:02d}" for i in range(40)]
    tokens = stream(*words)
    segs = build_segments(tokens, DELAY_MS)
    assert len(segs) > 1
    assert all(len(s.text) <= 84 for s in segs)
    assert " ".join(texts(segs)) == " ".join(w.strip() for w in words)
    check_invariants(segs)


def test_words_split_across_tokens_stay_whole() -> None:
    tokens = stream(*[x for i in range(30) for x in (f" ex{i:02d}", "ample", PAD)])
    segs = build_segments(tokens, DELAY_MS, max_chars=30)
    assert all(len(s.text) <= 30 for s in segs)
    for seg in segs:
        assert all(word.endswith("ample") for word in seg.text.split())


def test_an_unbreakable_run_splits_between_tokens() -> None:
    tokens = stream(*["字"] * 100)
    segs = build_segments(tokens, DELAY_MS, max_chars=42)
    assert [len(s.text) for s in segs] == [42, 42, 16]
    check_invariants(segs)


def test_max_duration() -> None:
    # One word every 0.64 s (7 pads: no pause break) for 20 s: cues stay within 7 s.
    tokens = stream(*[x for i in range(32) for x in (f" w{i}", *[PAD] * 7)])
    segs = build_segments(tokens, DELAY_MS, max_duration=7.0)
    assert len(segs) >= 3
    assert all(s.end - s.start <= 7.0 for s in segs)
    check_invariants(segs)


@pytest.mark.parametrize("seed", range(20))
def test_random_streams_keep_the_invariants(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [
        " the",
        " cat",
        "s",
        " sat",
        ".",
        "?",
        " 3",
        ".",
        "5",
        " on",
        " mat",
        "!",
        "日本",
        "。",
        " \n",
        "é",
    ]
    items: list[object] = []
    for _ in range(rng.randrange(0, 400)):
        r = rng.random()
        items.append(PAD if r < 0.45 else WORD if r < 0.55 else rng.choice(vocab))
    tokens = stream(*items)
    duration = rng.choice([None, rng.uniform(0.0, len(items) * 0.08)])
    segs = build_segments(
        tokens, rng.choice([80, 480, 2400]), max_chars=rng.choice([10, 42, 84]), duration_s=duration
    )
    check_invariants(segs, duration_s=duration)
    # No text is lost or invented (whitespace aside).
    text = "".join(t.text for t in tokens)
    assert "".join("".join(texts(segs)).split()) == "".join(text.split())


def test_an_unbreakable_run_splits_by_duration() -> None:
    # One "word" whose pieces trickle in for 12 s (pads shorter than a pause between them).
    tokens = stream(*[x for _ in range(15) for x in ("字", *[PAD] * 9)])
    segs = build_segments(tokens, DELAY_MS, max_duration=7.0)
    assert len(segs) == 2
    assert all(s.end - s.start <= 7.0 for s in segs)
    assert "".join(texts(segs)) == "字" * 15


def test_text_on_a_control_token_is_kept() -> None:
    # The session appends the detokenizer's flushed tail (an unfinished character -> U+FFFD) to
    # the stream's last token, which may be a [STREAMING_PAD].
    tokens = stream(" ok", PAD)
    last = tokens[-1]
    tokens[-1] = TimedToken(last.id, last.step, last.time_s, "\ufffd")
    assert texts(build_segments(tokens, DELAY_MS)) == ["ok\ufffd"]


def test_other_control_ids_count_as_silence() -> None:
    tokens = stream(" one", *[PAD] * 3, " two")
    tokens[1:4] = [TimedToken(955, t.step, t.time_s, "") for t in tokens[1:4]]
    assert texts(build_segments(tokens, DELAY_MS, pause_s=0.2)) == ["one", "two"]
