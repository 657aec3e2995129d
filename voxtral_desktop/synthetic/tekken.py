"""Build a realistic tekken.json for tests and the demo tool, without downloading anything.

The text vocabulary comes from the Tekken file that ships inside the mistral-common wheel
(`mistral_common/data/tekken_240911.json`, a real 150k-rank Tekken vocabulary in the same format
as Voxtral's). Without mistral-common, a small byte-level BPE is trained on a built-in word list
so the demo still works. The result has the same schema as Voxtral Realtime's tekken.json:
`config`, `vocab`, 1000 `special_tokens` and a streaming `audio` section, and it loads with both
`TekkenTokenizer` and mistral-common's `Tekkenizer.from_file`.

A small vocabulary is the first ranks of the source plus the tokens (and every BPE intermediate
they merge from) that the source uses for the `must_include` strings, kept in source order and
renumbered 0..n-1. Keeping the order keeps BPE valid: a token's rank stays above the ranks of
the pieces it merges from, so the subset encodes those strings exactly as the source does.
"""

from __future__ import annotations

import base64
import bisect
import functools
import importlib.util
import itertools
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxtral_desktop.config import (
    DEFAULT_DELAY_MS,
    HOP_LENGTH,
    N_FFT,
    N_LEFT_PAD_TOKENS,
    N_SPECIAL_TOKENS,
    SAMPLE_RATE,
    SAMPLES_PER_TOKEN,
    check_delay_ms,
)
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.errors import ConfigError, TokenizerError

__all__ = [
    "DEFAULT_MUST_INCLUDE",
    "SPECIAL_TOKEN_NAMES",
    "TEKKEN_PATTERN",
    "audio_section",
    "build_tekken_json",
    "special_tokens_section",
    "write_tekken_json",
]

# Tekken's pre-tokenizer regex (identical in tekken_240718/240911 and Voxtral's file).
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Any version above v7 makes mistral-common read our special_tokens instead of its defaults.
TEKKEN_VERSION = "v13"

# Control tokens 0..34 as laid out in Voxtral's tekken.json; the rest are "<SPECIAL_N>".
SPECIAL_TOKEN_NAMES: tuple[str, ...] = (
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
    "[BBOX]",
    "[/BBOX]",
    "[STEP]",
    "[/STEP]",
    "[AUDIO]",
    "[BEGIN_AUDIO]",
    "[OUTPUT_AUDIO]",
    "[REF]",
    "[/REF]",
    "[REASONING]",
    "[VERIFICATION]",
    "[SCORE]",
    "[STREAMING_PAD]",
    "[STREAMING_WORD]",
    "[REPEAT_AUDIO_TEXT]",
)

# Strings whose source tokens a small vocabulary keeps, so multi-byte characters appear both as
# whole tokens and (the emoji, which Tekken spells byte by byte) split across tokens.
DEFAULT_MUST_INCLUDE: tuple[str, ...] = (
    "é",
    "è",
    "à",
    "ç",
    "ß",
    "ü",
    "ö",
    " café",
    " Straße",
    "日本",
    "日本語",
    "こんにちは",
    "€",
    "😀",
)

# Streaming look-ahead/behind of Voxtral's audio section (ms); they only matter to mistral-common.
_LOOK_AHEAD_MS = 2.5
_LOOK_BACK_MS = 52.5

_MISTRAL_COMMON_VOCAB = ("data", "tekken_240911.json")

# The fallback BPE is trained on this (plus must_include): frequent words of the 13 languages
# Voxtral supports that a Latin/Japanese test corpus touches.
_BUILTIN_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or "
    "one had by word but not what all were we when your can said there use an each which she do "
    "how their if will up other about out many then them these so some her would make like him "
    "into time has look two more write go see number no way could people my than first water "
    "been call who oil its now find long down day did get come made may part hello world speech "
    "transcription realtime streaming model audio voice text token Voxtral Mistral "
    "le la les de des du un une et est pas que qui dans pour sur avec être avoir café été très "
    "où français garçon déjà après à ça "
    "der die das und ist nicht ein eine zu mit auf für Straße groß Größe schön über Mädchen "
    "el los las por con para es una que más también español niño año "
    "il di che non per una sono questo "
    "日本 日本語 東京 こんにちは ありがとう 音声 認識 "
    "0 1 2 3 4 5 6 7 8 9 , . ! ? ' \" - : ; ( ) € $ % 😀 🎉"
)


@dataclass(frozen=True)
class _Source:
    """A Tekken vocabulary to take tokens from, in rank order."""

    pattern: str
    b64: tuple[str, ...]
    pieces: tuple[bytes, ...]
    strs: tuple[str | None, ...]
    n_effective: int  # ranks the source's own config uses (default_vocab_size - n_special)


def _piece_str(piece: bytes) -> str | None:
    # tekken.json stores token_str only for tokens that are whole UTF-8 text.
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _source_from_dict(d: Mapping[str, Any], where: str) -> _Source:
    try:
        config = d["config"]
        vocab = d["vocab"]
        pattern = config["pattern"]
        b64 = tuple(entry["token_bytes"] for entry in vocab)
        strs = tuple(entry.get("token_str") for entry in vocab)
        ranks = [entry["rank"] for entry in vocab]
        n_eff = int(config["default_vocab_size"]) - int(config["default_num_special_tokens"])
        pieces = tuple(base64.b64decode(s, validate=True) for s in b64)
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenizerError(
            f"{where}: not a usable tekken.json source ({type(exc).__name__}: {exc})"
        ) from None
    if ranks != list(range(len(ranks))):
        raise TokenizerError(f"{where}: vocab ranks are not 0..{len(ranks) - 1} in order")
    if any(pieces[b] != bytes([b]) for b in range(min(256, len(pieces)))) or len(pieces) < 256:
        raise TokenizerError(f"{where}: ranks 0..255 of the vocab are not the 256 single bytes")
    return _Source(pattern=pattern, b64=b64, pieces=pieces, strs=strs, n_effective=min(n_eff, len(pieces)))


def _mistral_common_tekken_path() -> Path | None:
    # find_spec locates the installed package without importing it (its import pulls pydantic).
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*_MISTRAL_COMMON_VOCAB)
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=2)
def _file_source(path: str) -> _Source:
    try:
        d = json.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer source not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot read tokenizer source {path}: {exc}") from None
    if not isinstance(d, Mapping):
        raise TokenizerError(f"{path}: not a tekken.json (expected a JSON object)")
    return _source_from_dict(d, path)


def _pretokenize(text: str, pattern: str) -> list[bytes]:
    import regex  # tiktoken's own dependency; only the fallback needs it in Python

    return [m.encode("utf-8") for m in regex.findall(pattern, text)]


@functools.lru_cache(maxsize=4)
def _builtin_source(min_size: int, extra_text: str) -> _Source:
    """A byte-level BPE trained on `_BUILTIN_WORDS` + `extra_text`, padded to `min_size` ranks."""
    pieces: list[bytes] = [bytes([b]) for b in range(256)]
    rank: dict[bytes, int] = {p: i for i, p in enumerate(pieces)}
    chunks = Counter(_pretokenize(" " + _BUILTIN_WORDS + " " + extra_text, TEKKEN_PATTERN))
    words = [([bytes([b]) for b in chunk], count) for chunk, count in chunks.items()]
    while True:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for parts, count in words:
            for a, b in itertools.pairwise(parts):
                pairs[a, b] += count
        if not pairs:
            break
        # Most frequent pair; ties go to the older pieces so the result is deterministic.
        a, b = max(pairs, key=lambda p: (pairs[p], -rank[p[0]], -rank[p[1]]))
        merged = a + b
        if merged not in rank:
            rank[merged] = len(pieces)
            pieces.append(merged)
        for parts, _ in words:
            i = 0
            while i < len(parts) - 1:
                if parts[i] == a and parts[i + 1] == b:
                    parts[i : i + 2] = [merged]
                i += 1
    # Pad with more valid merges (an existing token + a frequent letter) until big enough: a
    # synthetic model may want any vocab size, and these are ordinary BPE tokens.
    i = 32
    while len(pieces) < min_size:
        for letter in b"etaoinsrhl":
            cand = pieces[i] + bytes([letter])
            if cand not in rank and len(pieces) < min_size:
                rank[cand] = len(pieces)
                pieces.append(cand)
        i += 1
    return _Source(
        pattern=TEKKEN_PATTERN,
        b64=tuple(base64.b64encode(p).decode("ascii") for p in pieces),
        pieces=tuple(pieces),
        strs=tuple(_piece_str(p) for p in pieces),
        n_effective=len(pieces),
    )


def _resolve_source(
    source: str | os.PathLike[str] | Mapping[str, Any] | None, n_text_tokens: int, must_include: Sequence[str]
) -> _Source:
    if isinstance(source, Mapping):
        return _source_from_dict(source, "source dict")
    if source is None:
        path = _mistral_common_tekken_path()
        if path is not None:
            return _file_source(str(path))
        source = "builtin"
    if source == "builtin":
        return _builtin_source(n_text_tokens, " ".join(must_include))
    return _file_source(str(Path(source)))


def _merge_closure(piece: bytes, ranks: Mapping[bytes, int]) -> set[bytes]:
    """`piece` and every intermediate token BPE builds on the way to it from single bytes."""
    parts = [bytes([b]) for b in piece]
    seen = {piece}  # tiktoken returns a whole-chunk token directly, even one BPE cannot reach
    while len(parts) > 1:
        best: tuple[int, int] | None = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        seen.add(parts[i])
    return seen


def special_tokens_section(n_special: int = N_SPECIAL_TOKENS) -> list[dict[str, Any]]:
    """Voxtral's control tokens: the named ones, then `<SPECIAL_N>` fillers up to `n_special`."""
    return [
        {
            "rank": i,
            "token_str": SPECIAL_TOKEN_NAMES[i] if i < len(SPECIAL_TOKEN_NAMES) else f"<SPECIAL_{i}>",
            "is_control": True,
        }
        for i in range(n_special)
    ]


def audio_section(delay_ms: int = DEFAULT_DELAY_MS) -> dict[str, Any]:
    """The streaming `audio` section of Voxtral Realtime's tekken.json."""
    check_delay_ms(delay_ms)
    return {
        "sampling_rate": SAMPLE_RATE,
        "frame_rate": SAMPLE_RATE / SAMPLES_PER_TOKEN,  # 12.5 tokens per second
        "audio_encoding_config": {"num_mel_bins": 128, "hop_length": HOP_LENGTH, "window_size": N_FFT},
        "chunk_length_s": None,
        "transcription_format": "streaming",
        "transcription_delay_ms": delay_ms,
        "streaming_look_ahead_ms": _LOOK_AHEAD_MS,
        "streaming_look_back_ms": _LOOK_BACK_MS,
        "streaming_n_left_pad_tokens": N_LEFT_PAD_TOKENS,
    }


def build_tekken_json(
    n_text_tokens: int,
    *,
    must_include: Sequence[str] = DEFAULT_MUST_INCLUDE,
    delay_ms: int = DEFAULT_DELAY_MS,
    source: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """A tekken.json dict with `n_text_tokens` BPE ranks and 1000 control tokens.

    `source`: None takes the vocabulary from the installed mistral-common (or the built-in BPE
    when it is missing); "builtin" forces the built-in BPE; a path or dict takes any tekken.json.
    With `verify`, the result is loaded back and every `must_include` string must round-trip and
    encode to the same token bytes as in the source.
    """
    if not isinstance(n_text_tokens, int) or isinstance(n_text_tokens, bool) or n_text_tokens < 256:
        raise ConfigError(
            f"n_text_tokens must be an integer >= 256 (the single bytes), got {n_text_tokens!r}"
        )
    if isinstance(must_include, str):
        raise ConfigError("must_include must be a sequence of strings, not one string")
    audio = audio_section(delay_ms)
    src = _resolve_source(source, n_text_tokens, must_include)
    if n_text_tokens > len(src.pieces):
        raise ConfigError(
            f"the source vocabulary has only {len(src.pieces)} tokens; asked for {n_text_tokens}"
        )

    # "Where the source has them" means in the ranks the source's own tokenizer uses (130,072
    # for Tekken), so a small vocabulary only holds tokens Voxtral can actually emit.
    n_ref = min(len(src.pieces), max(src.n_effective, n_text_tokens))
    ref_ranks = {p: r for r, p in enumerate(src.pieces[:n_ref])}
    ref_tokens: dict[str, list[bytes]] = {}
    chosen: set[int] = set()
    if must_include:
        import tiktoken

        ref = tiktoken.Encoding(
            "tekken-source", pat_str=src.pattern, mergeable_ranks=ref_ranks, special_tokens={}
        )
        for text in must_include:
            tokens = [src.pieces[r] for r in ref.encode_ordinary(text)]
            ref_tokens[text] = tokens
            for tok in tokens:
                chosen.update(ref_ranks[p] for p in _merge_closure(tok, ref_ranks) if p in ref_ranks)
    extra = sorted(r for r in chosen if r >= 256)

    # Smallest prefix length m with m + |extra ranks >= m| == n: m + extras(m) grows by 0 or 1
    # per step, so the first m that reaches n hits it exactly.
    def total(m: int) -> int:
        return m + len(extra) - bisect.bisect_left(extra, m)

    m = max(256, n_text_tokens - len(extra))
    while total(m) < n_text_tokens:
        m += 1
    if total(m) != n_text_tokens:
        raise ConfigError(
            f"n_text_tokens {n_text_tokens} is too small for the must_include tokens "
            f"(need at least {total(256)})"
        )
    ranks = list(range(m)) + extra[bisect.bisect_left(extra, m) :]

    vocab = [
        {"rank": new, "token_bytes": src.b64[old], "token_str": src.strs[old]}
        for new, old in enumerate(ranks)
    ]
    data: dict[str, Any] = {
        "config": {
            "pattern": src.pattern,
            "num_vocab_tokens": n_text_tokens,
            "default_vocab_size": N_SPECIAL_TOKENS + n_text_tokens,
            "default_num_special_tokens": N_SPECIAL_TOKENS,
            "version": TEKKEN_VERSION,
        },
        "vocab": vocab,
        "special_tokens": special_tokens_section(N_SPECIAL_TOKENS),
        "audio": audio,
    }
    if verify:
        _verify(data, ref_tokens)
    return data


def _verify(data: dict[str, Any], ref_tokens: Mapping[str, list[bytes]]) -> None:
    tok = TekkenTokenizer.from_dict(data, name="synthetic tekken.json")
    for text, expected in ref_tokens.items():
        ids = tok.encode(text)
        got = [tok.token_bytes(i) for i in ids]
        # A failure here is a bug in the rank selection above, not a user error.
        if got != expected:
            raise AssertionError(f"synthetic vocab encodes {text!r} as {got}, source as {expected}")
        if tok.decode(ids) != text:
            raise AssertionError(f"synthetic vocab does not round-trip {text!r}")


def write_tekken_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Write `data` as UTF-8 JSON (non-ASCII token_str kept readable, like the real file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return p
