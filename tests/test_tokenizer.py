"""TekkenTokenizer, StreamingDetokenizer and the synthetic tekken.json builder.

mistral-common's `Tekkenizer` is the oracle: every file we build must load there too, and our
ids and text must equal its ids and text. Files are built once per module (the realistic one has
130,072 ranks and takes about a second to build and load).
"""

from __future__ import annotations

import base64
import json
import random
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest

from voxtral_desktop.config import BOS_ID, EOS_ID, PAD_ID, STREAMING_PAD_ID, STREAMING_WORD_ID
from voxtral_desktop.engine.tokenizer import StreamingDetokenizer, TekkenTokenizer
from voxtral_desktop.errors import ConfigError, TokenizerError
from voxtral_desktop.synthetic import tekken as synth
from voxtral_desktop.synthetic.tekken import DEFAULT_MUST_INCLUDE, build_tekken_json, write_tekken_json

N_REALISTIC = 130_072
N_SMALL = 2_000

TEXTS = [
    "Hello, world! This is a realtime transcription test.",
    "Le garçon a déjà mangé au café près de l'église, où était-il ?",
    "Die Straße ist groß, und das Mädchen heißt Jürgen. Weiß ich nicht.",
    "日本語の音声認識はとても難しいです。東京タワーへ行きましょう",
    "Emoji: 😀🎉👍🏽 and a flag 🇫🇷 — done…",
    "Mixed: naïve coöperation, Ελληνικά, русский текст, العربية, हिन्दी, 한국어",
    "  leading and trailing spaces  \n new line\ttab\r\n",
    "numbers 1234567890 and 3.14159 and €42,50",
    "[STREAMING_PAD] <s> </s> look like control tokens but are text",
    "",
]


def _mc_tekkenizer() -> Any:
    return pytest.importorskip("mistral_common.tokens.tokenizers.tekken").Tekkenizer


def _is_text(t: int) -> bool:
    return t >= 1000


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tekken_json(tmp_path_factory.mktemp("big") / "tekken.json", build_tekken_json(N_REALISTIC))


@pytest.fixture(scope="module")
def small_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tekken_json(tmp_path_factory.mktemp("small") / "tekken.json", build_tekken_json(N_SMALL))


@pytest.fixture(scope="module")
def big(big_path: Path) -> TekkenTokenizer:
    return TekkenTokenizer.from_file(big_path)


@pytest.fixture(scope="module")
def small(small_path: Path) -> TekkenTokenizer:
    return TekkenTokenizer.from_file(small_path)


@pytest.fixture(scope="module")
def mc_big(big_path: Path) -> Any:
    return _mc_tekkenizer().from_file(big_path)


@pytest.fixture(scope="module")
def mc_small(small_path: Path) -> Any:
    return _mc_tekkenizer().from_file(small_path)


@pytest.fixture(scope="module", params=["small", "big"])
def pair(request: pytest.FixtureRequest) -> tuple[TekkenTokenizer, Any]:
    """(ours, mistral-common's) for the same file."""
    name = request.param
    return request.getfixturevalue(name), request.getfixturevalue(f"mc_{name}")


def _random_ids(rng: random.Random, tok: TekkenTokenizer, n: int, control_rate: float = 0.2) -> list[int]:
    """Ids that often split characters: any text id, raw UTF-8 lead/continuation bytes, controls."""
    ids = []
    for _ in range(n):
        r = rng.random()
        if r < control_rate:
            ids.append(rng.choice([BOS_ID, EOS_ID, STREAMING_PAD_ID, STREAMING_WORD_ID, rng.randrange(1000)]))
        elif r < 0.6:
            ids.append(tok.n_special + rng.randrange(0x80, 0x100))  # a lone lead/continuation byte
        else:
            ids.append(rng.randrange(tok.n_special, tok.vocab_size))
    return ids


def _text_ids(rng: random.Random, tok: TekkenTokenizer, text: str, *, bytewise: bool) -> list[int]:
    """Ids spelling `text` (as tokens, or one id per byte) with control ids sprinkled in."""
    base = [tok.n_special + b for b in text.encode()] if bytewise else tok.encode(text)
    out: list[int] = []
    for t in base:
        while rng.random() < 0.3:
            out.append(rng.choice([STREAMING_PAD_ID, STREAMING_WORD_ID]))
        out.append(t)
    return out


# ---- against mistral-common ------------------------------------------------------------------
def test_special_ids_and_sizes(pair: tuple[TekkenTokenizer, Any]) -> None:
    ours, mc = pair
    assert (ours.bos_id, ours.eos_id) == (BOS_ID, EOS_ID) == (mc.bos_id, mc.eos_id)
    assert ours.streaming_pad_id == STREAMING_PAD_ID == mc.get_special_token("[STREAMING_PAD]")
    assert ours.streaming_word_id == STREAMING_WORD_ID == mc.get_special_token("[STREAMING_WORD]")
    assert ours.special_id("<pad>") == PAD_ID == mc.pad_id
    assert ours.n_special == 1000 == mc.num_special_tokens
    assert ours.vocab_size == mc.n_words == 1000 + ours.n_text
    assert ours.audio_delay_ms == 480 == mc.audio.transcription_delay_ms
    assert mc.audio.streaming_n_left_pad_tokens == 32 and mc.audio.frame_rate == 12.5
    assert not ours.is_text(STREAMING_PAD_ID) and not ours.is_text(999)
    assert ours.is_text(1000) and ours.is_text(ours.vocab_size - 1) and not ours.is_text(ours.vocab_size)


def test_sizes_of_built_files(big: TekkenTokenizer, small: TekkenTokenizer) -> None:
    assert big.vocab_size == 131_072  # the real model's vocab_size
    assert small.vocab_size == 1000 + N_SMALL


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_mistral_common(pair: tuple[TekkenTokenizer, Any], text: str) -> None:
    ours, mc = pair
    ids = ours.encode(text)
    assert ids == mc.encode(text, bos=False, eos=False)
    assert all(ours.is_text(i) for i in ids)
    assert ours.decode(ids) == mc.decode(ids) == text


def test_id_to_piece_matches_mistral_common(pair: tuple[TekkenTokenizer, Any]) -> None:
    ours, mc = pair
    rng = random.Random(1)
    sample = [
        *range(40),
        999,
        *(rng.randrange(1000, ours.vocab_size) for _ in range(500)),
        ours.vocab_size - 1,
    ]
    for t in sample:
        assert ours.id_to_piece(t) == mc.id_to_piece(t), t
        expected = b"" if t < 1000 else mc.id_to_byte_piece(t)
        assert ours.token_bytes(t) == expected, t


def test_decode_matches_mistral_common_on_random_ids(pair: tuple[TekkenTokenizer, Any]) -> None:
    ours, mc = pair
    rng = random.Random(1234)
    for _ in range(400):
        ids = _random_ids(rng, ours, rng.randrange(0, 40))
        # mistral-common decodes each run of text ids on its own; with the controls taken out
        # first it decodes the joined bytes, which is what we do.
        assert ours.decode(ids) == mc.decode([t for t in ids if _is_text(t)])


def test_mistral_common_decodes_runs_between_controls_separately(pair: tuple[TekkenTokenizer, Any]) -> None:
    """Pins the one difference: mistral-common splits at control ids, we do not."""
    ours, mc = pair
    byte = ours.n_special
    ids = [byte + 0xE6, STREAMING_PAD_ID, byte + 0x97, byte + 0xA5]  # "日" split by a pad
    assert ours.decode(ids) == "日"
    assert mc.decode(ids) == "\ufffd" * 3
    rng = random.Random(99)
    for _ in range(200):
        ids = _random_ids(rng, ours, rng.randrange(0, 30), control_rate=0.4)
        runs = ["".join(ours.decode(list(g))) for keep, g in groupby(ids, key=_is_text) if keep]
        assert mc.decode(ids) == "".join(runs)


def test_decode_of_encoded_text_with_controls(pair: tuple[TekkenTokenizer, Any]) -> None:
    ours, mc = pair
    rng = random.Random(7)
    for text in TEXTS:
        ids = [BOS_ID, *_text_ids(rng, ours, text, bytewise=False), EOS_ID]
        assert ours.decode(ids) == text == mc.decode([t for t in ids if _is_text(t)])


def test_legacy_file_without_special_tokens_matches_mistral_common() -> None:
    """mistral-common's own tekken_240911.json: no special_tokens/audio, 150k ranks cut to 130,072."""
    path = synth._mistral_common_tekken_path()
    if path is None:
        pytest.skip("mistral-common is not installed")
    ours = TekkenTokenizer.from_file(path)
    mc = _mc_tekkenizer().from_file(path)
    assert ours.vocab_size == mc.n_words == 131_072 and ours.n_text == 130_072
    assert (ours.bos_id, ours.eos_id, ours.streaming_pad_id, ours.streaming_word_id) == (1, 2, 32, 33)
    assert ours.audio_delay_ms is None and ours.audio is None
    for t in range(20):
        assert ours.id_to_piece(t) == mc.id_to_piece(t)
    for text in TEXTS:
        assert ours.encode(text) == mc.encode(text, bos=False, eos=False)
    rng = random.Random(5)
    for _ in range(100):
        ids = _random_ids(rng, ours, 30)
        assert ours.decode(ids) == mc.decode([t for t in ids if _is_text(t)])


# ---- our own contract --------------------------------------------------------------------------
def test_from_bytes_and_gguf_string(small_path: Path, small: TekkenTokenizer) -> None:
    raw = small_path.read_bytes()
    for tok in (
        TekkenTokenizer.from_bytes(raw),
        TekkenTokenizer.from_bytes(raw.decode("utf-8")),  # a GGUF stores the JSON as a string
        TekkenTokenizer.from_dict(json.loads(raw)),
    ):
        assert tok.vocab_size == small.vocab_size
        for text in TEXTS:
            assert tok.encode(text) == small.encode(text)


def test_encode_never_emits_control_ids(small: TekkenTokenizer) -> None:
    ids = small.encode("[STREAMING_PAD]<s></s>[INST]")
    assert ids and all(small.is_text(i) for i in ids)


def test_decode_rejects_out_of_range_ids(small: TekkenTokenizer) -> None:
    with pytest.raises(ValueError):
        small.decode([small.vocab_size])
    with pytest.raises(ValueError):
        small.token_bytes(-1)


def test_decode_accepts_numpy_ids(small: TekkenTokenizer) -> None:
    np = pytest.importorskip("numpy")
    ids = np.array(small.encode("café 日本"), dtype=np.int64)
    assert small.decode(ids) == "café 日本"


def test_single_byte_ranks(small: TekkenTokenizer, big: TekkenTokenizer) -> None:
    for tok in (small, big):
        assert all(tok.token_bytes(tok.n_special + b) == bytes([b]) for b in range(256))


# ---- streaming detokenizer -------------------------------------------------------------------
def _stream(det: StreamingDetokenizer, ids: list[int]) -> list[str]:
    return [det.push(t) for t in ids]


def test_streaming_invariant_random_ids(small: TekkenTokenizer, big: TekkenTokenizer) -> None:
    rng = random.Random(20240911)
    for tok in (small, big):
        det = tok.streaming()
        for _ in range(500):
            ids = _random_ids(rng, tok, rng.randrange(0, 50))
            chunks = []
            for t in ids:
                chunks.append(det.push(t))
                assert len(det.pending) <= 3  # at most a 4-byte character's first 3 bytes wait
            assert "".join(chunks) + det.flush() == tok.decode(ids)
            assert det.pending == b""


def test_streaming_never_emits_half_a_character(small: TekkenTokenizer, big: TekkenTokenizer) -> None:
    rng = random.Random(11)
    for tok in (small, big):
        det = StreamingDetokenizer(tok)
        for _ in range(20):
            for text in TEXTS:
                for bytewise in (False, True):
                    chunks = _stream(det, _text_ids(rng, tok, text, bytewise=bytewise))
                    assert all("\ufffd" not in c for c in chunks), chunks
                    assert "".join(chunks) == text
                    assert det.flush() == ""


def test_streaming_holds_back_partial_characters(small: TekkenTokenizer) -> None:
    det = small.streaming()
    b = small.n_special
    assert det.push(small.encode("a")[0]) == "a"
    assert det.push(b + 0xE6) == "" and det.pending == b"\xe6"  # first byte of 日
    assert det.push(STREAMING_PAD_ID) == "" and det.pending == b"\xe6"  # controls don't flush it
    assert det.push(b + 0x97) == "" and det.pending == b"\xe6\x97"
    assert det.push(b + 0xA5) == "日" and det.pending == b""
    # 😀 = f0 9f 98 80, the way Tekken spells it: four byte tokens
    parts = [det.push(b + x) for x in b"\xf0\x9f\x98\x80"]
    assert parts == ["", "", "", "😀"]


def test_streaming_invalid_bytes_never_block(small: TekkenTokenizer) -> None:
    det = small.streaming()
    b = small.n_special
    assert det.push(b + 0x80) == "\ufffd"  # a stray continuation byte can never complete
    assert det.push(b + 0xFF) == "\ufffd"
    assert det.push(b + 0xE6) == ""
    assert det.push(b + ord("a")) == "\ufffda"  # the lead byte is given up as soon as "a" arrives
    assert det.push(b + 0xF0) == "" and det.push(b + 0x9F) == ""
    assert det.flush() == "\ufffd" == small.decode([b + 0xF0, b + 0x9F])
    assert det.pending == b""


def test_streaming_reset_and_reuse(small: TekkenTokenizer) -> None:
    det = small.streaming()
    det.push(small.n_special + 0xC3)
    det.reset()
    assert det.pending == b""
    assert det.push_many(small.encode("café")) == "café"
    assert det.flush() == ""


# ---- the synthetic builder -------------------------------------------------------------------
def test_realistic_vocab_is_the_source_prefix(big_path: Path) -> None:
    path = synth._mistral_common_tekken_path()
    if path is None:
        pytest.skip("mistral-common is not installed")
    source = json.loads(path.read_text("utf-8"))["vocab"][:N_REALISTIC]
    built = json.loads(big_path.read_text("utf-8"))["vocab"]
    assert [v["token_bytes"] for v in built] == [v["token_bytes"] for v in source]


def _check_bpe_order(data: dict[str, Any]) -> None:
    """Each merged token splits into two tokens of lower rank, as in a trained BPE."""
    pieces = [base64.b64decode(v["token_bytes"]) for v in data["vocab"]]
    rank = {p: i for i, p in enumerate(pieces)}
    assert len(rank) == len(pieces)
    assert [v["rank"] for v in data["vocab"]] == list(range(len(pieces)))
    assert pieces[:256] == [bytes([b]) for b in range(256)]
    for r, p in enumerate(pieces[256:], 256):
        assert any(rank.get(p[:k], r) < r and rank.get(p[k:], r) < r for k in range(1, len(p))), (r, p)


def test_small_vocab_schema_and_merge_order(small_path: Path) -> None:
    data = json.loads(small_path.read_text("utf-8"))
    _check_bpe_order(data)
    cfg = data["config"]
    assert cfg["default_vocab_size"] == 1000 + N_SMALL == 1000 + cfg["num_vocab_tokens"]
    assert cfg["default_num_special_tokens"] == 1000 and cfg["pattern"] == synth.TEKKEN_PATTERN
    specials = data["special_tokens"]
    assert [s["rank"] for s in specials] == list(range(1000))
    assert all(s["is_control"] for s in specials) and len({s["token_str"] for s in specials}) == 1000
    names = {s["rank"]: s["token_str"] for s in specials}
    assert (names[0], names[1], names[2], names[3], names[11]) == ("<unk>", "<s>", "</s>", "[INST]", "<pad>")
    assert (names[32], names[33], names[999]) == ("[STREAMING_PAD]", "[STREAMING_WORD]", "<SPECIAL_999>")
    audio = data["audio"]
    assert audio["sampling_rate"] == 16000 and audio["frame_rate"] == 12.5
    assert audio["transcription_delay_ms"] == 480 and audio["streaming_n_left_pad_tokens"] == 32


def test_small_vocab_keeps_must_include_tokens(small: TekkenTokenizer, big: TekkenTokenizer) -> None:
    for text in DEFAULT_MUST_INCLUDE:
        pieces = [small.token_bytes(t) for t in small.encode(text)]
        assert pieces == [big.token_bytes(t) for t in big.encode(text)], text
    # Multi-byte characters exist both as whole tokens and spelt byte by byte.
    assert [small.token_bytes(t) for t in small.encode("é")] == ["é".encode()]
    assert len(small.encode("😀")) == 4


def test_builtin_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = build_tekken_json(N_SMALL, source="builtin")
    _check_bpe_order(data)
    # Without mistral-common the default source is the built-in one.
    monkeypatch.setattr(synth, "_mistral_common_tekken_path", lambda: None)
    assert build_tekken_json(N_SMALL) == data
    path = write_tekken_json(tmp_path / "tekken.json", data)
    ours = TekkenTokenizer.from_file(path)
    assert ours.vocab_size == 1000 + N_SMALL
    for text in TEXTS:
        assert ours.decode(ours.encode(text)) == text
    assert [ours.token_bytes(t) for t in ours.encode(" Straße")] == [" Straße".encode()]
    mc = _mc_tekkenizer().from_file(path)
    for text in TEXTS:
        assert ours.encode(text) == mc.encode(text, bos=False, eos=False)


def test_builtin_fallback_pads_to_any_size() -> None:
    data = build_tekken_json(5_000, source="builtin", must_include=())
    assert len(data["vocab"]) == 5_000
    _check_bpe_order(data)


def test_source_path_equals_default(small_path: Path) -> None:
    path = synth._mistral_common_tekken_path()
    if path is None:
        pytest.skip("mistral-common is not installed")
    assert build_tekken_json(N_SMALL, source=path) == json.loads(small_path.read_text("utf-8"))


def test_other_delay_and_write_round_trip(tmp_path: Path) -> None:
    data = build_tekken_json(400, delay_ms=960)
    path = write_tekken_json(tmp_path / "sub" / "tekken.json", data)
    assert json.loads(path.read_text("utf-8")) == data
    tok = TekkenTokenizer.from_file(path)
    assert tok.audio_delay_ms == 960 and tok.vocab_size == 1400
    assert _mc_tekkenizer().from_file(path).audio.transcription_delay_ms == 960


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_text_tokens": 100}, "n_text_tokens"),
        ({"n_text_tokens": 260}, "too small"),
        ({"n_text_tokens": 1000, "delay_ms": 100}, "delay"),
        ({"n_text_tokens": 1000, "must_include": "é"}, "sequence"),
    ],
)
def test_builder_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_tekken_json(**kwargs)


def test_builder_rejects_more_tokens_than_the_source() -> None:
    if synth._mistral_common_tekken_path() is None:
        pytest.skip("mistral-common is not installed")
    with pytest.raises(ConfigError, match="only"):
        build_tekken_json(200_000)


# ---- errors ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return build_tekken_json(300, must_include=())


def _mutate(data: dict[str, Any], how: str) -> Any:
    d = json.loads(json.dumps(data))
    if how == "list":
        return [d]
    if how in ("config", "vocab"):
        del d[how]
    elif how in ("pattern", "default_vocab_size", "default_num_special_tokens"):
        del d["config"][how]
    elif how == "base64":
        d["vocab"][290]["token_bytes"] = "!!not base64!!"
    elif how == "rank_order":
        d["vocab"][5]["rank"], d["vocab"][6]["rank"] = 6, 5
    elif how == "rank_gap":
        d["vocab"][-1]["rank"] += 1
    elif how == "no_rank":
        del d["vocab"][7]["rank"]
    elif how == "short_vocab":
        d["config"]["default_vocab_size"] += 10
    elif how == "bad_pattern":
        d["config"]["pattern"] = "([a-z"
    elif how == "duplicate":
        d["vocab"][299]["token_bytes"] = d["vocab"][100]["token_bytes"]
    elif how == "special_rank":
        d["special_tokens"][5]["rank"] = 5000
    elif how == "special_shape":
        d["special_tokens"] = {"rank": 1}
    elif how == "delay":
        d["audio"]["transcription_delay_ms"] = "soon"
    else:
        raise AssertionError(how)
    return d


BAD = [
    "list",
    "config",
    "vocab",
    "pattern",
    "default_vocab_size",
    "default_num_special_tokens",
    "base64",
    "rank_order",
    "rank_gap",
    "no_rank",
    "short_vocab",
    "bad_pattern",
    "duplicate",
    "special_rank",
    "special_shape",
    "delay",
]


def _assert_one_line(exc: pytest.ExceptionInfo[TokenizerError]) -> str:
    msg = str(exc.value)
    assert msg.strip() and "\n" not in msg
    return msg


@pytest.mark.parametrize("how", BAD)
def test_malformed_tekken_json(tiny: dict[str, Any], tmp_path: Path, how: str) -> None:
    bad = _mutate(tiny, how)
    path = tmp_path / "tekken.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(TokenizerError) as exc:
        TekkenTokenizer.from_file(path)
    assert str(path) in _assert_one_line(exc)
    with pytest.raises(TokenizerError) as exc:
        TekkenTokenizer.from_bytes(json.dumps(bad).encode())
    _assert_one_line(exc)


def test_the_unmutated_tiny_file_loads(tiny: dict[str, Any]) -> None:
    assert TekkenTokenizer.from_dict(tiny).vocab_size == 1300


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="not found") as exc:
        TekkenTokenizer.from_file(tmp_path / "nope.json")
    _assert_one_line(exc)
    with pytest.raises(TokenizerError, match="not a file") as exc:
        TekkenTokenizer.from_file(tmp_path)
    _assert_one_line(exc)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe garbage", b'{"config": {"pattern": ', b"{\n\n", b"\x89PNG\r\n\x1a\n"],
)
def test_not_json(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "tekken.json"
    path.write_bytes(raw)
    with pytest.raises(TokenizerError, match="not valid JSON") as exc:
        TekkenTokenizer.from_file(path)
    _assert_one_line(exc)
