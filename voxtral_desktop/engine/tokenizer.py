"""The Tekken tokenizer (tekken.json) read with tiktoken, and a streaming detokenizer.

Voxtral's ids are split in two ranges: ids below `n_special` (1000) are control tokens and never
text; id `t >= n_special` is BPE rank `t - n_special`. Only the first
`default_vocab_size - default_num_special_tokens` ranks of the file are used, exactly as
mistral-common's `Tekkenizer` truncates the vocabulary, so our ids equal the model's ids.

The BPE is byte-level: one token can end in the middle of a UTF-8 character, and the model emits
`[STREAMING_PAD]` / `[STREAMING_WORD]` between the pieces of a word. `decode` therefore drops all
control ids first and decodes the concatenated bytes, and `StreamingDetokenizer` holds back the
bytes of an unfinished character across control tokens instead of printing U+FFFD.

Nothing here touches the network: the encoding is built from the file, never from
`tiktoken.get_encoding`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiktoken

from voxtral_desktop.config import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    STREAMING_PAD_ID,
    STREAMING_WORD_ID,
)
from voxtral_desktop.errors import TokenizerError

__all__ = ["SpecialToken", "StreamingDetokenizer", "TekkenTokenizer"]

# Names used when a file has no `special_tokens` section (tekken files up to v7, such as
# mistral-common's tekken_240911.json). 0-19 are mistral-common's DEPRECATED_SPECIAL_TOKENS, so
# `id_to_piece` agrees with it; 32/33 are Voxtral's streaming tokens (config.py constants).
_LEGACY_SPECIAL_NAMES: dict[int, str] = {
    0: "<unk>",
    BOS_ID: "<s>",
    EOS_ID: "</s>",
    3: "[INST]",
    4: "[/INST]",
    5: "[AVAILABLE_TOOLS]",
    6: "[/AVAILABLE_TOOLS]",
    7: "[TOOL_RESULTS]",
    8: "[/TOOL_RESULTS]",
    9: "[TOOL_CALLS]",
    10: "[IMG]",
    PAD_ID: "<pad>",
    12: "[IMG_BREAK]",
    13: "[IMG_END]",
    14: "[PREFIX]",
    15: "[MIDDLE]",
    16: "[SUFFIX]",
    17: "[SYSTEM_PROMPT]",
    18: "[/SYSTEM_PROMPT]",
    19: "[TOOL_CONTENT]",
    STREAMING_PAD_ID: "[STREAMING_PAD]",
    STREAMING_WORD_ID: "[STREAMING_WORD]",
}
_SPECIAL_TEMPLATE = "<SPECIAL_{}>"  # mistral-common's filler name for undeclared control ids


@dataclass(frozen=True)
class SpecialToken:
    """One entry of tekken.json's `special_tokens` (its rank is the model id)."""

    rank: int
    name: str
    is_control: bool = True


def _fail(where: str, problem: str) -> TokenizerError:
    # One line, always naming the file, so the CLI/app can show it as is.
    return TokenizerError(f"{where}: {problem}".replace("\n", " "))


def _int_field(obj: Mapping[str, Any], key: str, where: str, section: str) -> int:
    if key not in obj:
        raise _fail(where, f"missing key {section}.{key}; not a tekken.json tokenizer")
    value = obj[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(where, f"{section}.{key} must be a non-negative integer, got {value!r}")
    return value


class TekkenTokenizer:
    """A Tekken byte-level BPE tokenizer whose ids are the model's token ids.

    Build it with `from_file`, `from_bytes` (the GGUF stores tekken.json as one string) or
    `from_dict`; the constructor takes already validated parts.
    """

    def __init__(
        self,
        *,
        pieces: Sequence[bytes],
        pattern: str,
        n_special: int,
        special_tokens: Sequence[SpecialToken] = (),
        audio: Mapping[str, Any] | None = None,
        version: str = "",
        name: str = "tekken",
    ) -> None:
        where = name
        if len(pieces) < 256:
            raise _fail(where, f"only {len(pieces)} text tokens; a byte-level BPE needs at least 256")
        ranks: dict[bytes, int] = {}
        for rank, piece in enumerate(pieces):
            if ranks.setdefault(piece, rank) != rank:
                raise _fail(where, f"vocab ranks {ranks[piece]} and {rank} have the same bytes {piece!r}")
        # Every single byte must be a token, or tiktoken cannot encode arbitrary text.
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise _fail(where, f"vocab lacks {len(missing)} single-byte tokens (first: 0x{missing[0]:02x})")
        try:
            self._enc = tiktoken.Encoding(
                name=f"voxtral-{name}",
                pat_str=pattern,
                mergeable_ranks=ranks,
                special_tokens={},  # control tokens never come from text; we map them by hand
            )
        except Exception as exc:  # the Rust core raises ValueError/RuntimeError for a bad regex
            raise _fail(where, f"config.pattern is not a valid regex ({exc})") from None
        self._pieces: tuple[bytes, ...] = tuple(pieces)
        self._n_special = n_special
        self._name = name
        self._version = version
        self._pattern = pattern

        names: dict[int, str] = {}
        for tok in special_tokens:
            if not 0 <= tok.rank < n_special:
                raise _fail(
                    where, f"special token {tok.name!r} has rank {tok.rank}, outside 0..{n_special - 1}"
                )
            if tok.rank in names:
                raise _fail(where, f"two special tokens share rank {tok.rank}")
            names[tok.rank] = tok.name
        if not special_tokens:
            names = {r: n for r, n in _LEGACY_SPECIAL_NAMES.items() if r < n_special}
        self._special_names = names
        self._special_ids = {n: r for r, n in names.items()}

        def control(name_: str, default: int) -> int:
            rank = self._special_ids.get(name_, default)
            if rank >= n_special:
                raise _fail(where, f"{name_} id {rank} is not a control id (n_special = {n_special})")
            return rank

        self._bos = control("<s>", BOS_ID)
        self._eos = control("</s>", EOS_ID)
        self._streaming_pad = control("[STREAMING_PAD]", STREAMING_PAD_ID)
        self._streaming_word = control("[STREAMING_WORD]", STREAMING_WORD_ID)

        self._audio = types.MappingProxyType(dict(audio)) if audio is not None else None
        self._audio_delay_ms = self._read_delay(where)

    # ---- constructors -----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TekkenTokenizer:
        p = Path(path)
        if not p.exists():
            raise TokenizerError(f"tokenizer file not found: {p}")
        if not p.is_file():
            raise TokenizerError(f"tokenizer path is not a file: {p}")
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise TokenizerError(f"cannot read tokenizer file {p}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, name=str(p))

    @classmethod
    def from_bytes(cls, data: bytes | str, *, name: str = "tekken.json") -> TekkenTokenizer:
        """Parse tekken.json text (bytes, or a str such as the one stored in a GGUF)."""
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(name, f"not valid JSON ({exc})") from None
        return cls.from_dict(obj, name=name)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, name: str = "tekken.json") -> TekkenTokenizer:
        where = name
        if not isinstance(d, Mapping):
            raise _fail(where, f"expected a JSON object, got {type(d).__name__}; not a tekken.json tokenizer")
        for key in ("config", "vocab"):
            if key not in d:
                raise _fail(where, f"missing key {key!r}; not a tekken.json tokenizer")
        config = d["config"]
        if not isinstance(config, Mapping):
            raise _fail(where, "config must be a JSON object")
        pattern = config.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise _fail(where, "missing key config.pattern; not a tekken.json tokenizer")
        vocab_size = _int_field(config, "default_vocab_size", where, "config")
        n_special = _int_field(config, "default_num_special_tokens", where, "config")
        n_text = vocab_size - n_special
        if n_text <= 0:
            raise _fail(
                where, f"default_vocab_size {vocab_size} leaves no room after {n_special} special tokens"
            )

        vocab = d["vocab"]
        if not isinstance(vocab, list):
            raise _fail(where, "vocab must be a JSON list")
        if len(vocab) < n_text:
            raise _fail(
                where, f"vocab has {len(vocab)} tokens but default_vocab_size needs {n_text} text tokens"
            )
        pieces = cls._read_vocab(vocab, n_text, where)
        special = cls._read_special(d.get("special_tokens"), where)

        audio = d.get("audio")
        if audio is not None and not isinstance(audio, Mapping):
            raise _fail(where, "audio must be a JSON object")
        version = config.get("version")
        return cls(
            pieces=pieces,
            pattern=pattern,
            n_special=n_special,
            special_tokens=special,
            audio=audio,
            version=version if isinstance(version, str) else "",
            name=name,
        )

    @staticmethod
    def _read_vocab(vocab: list[Any], n_text: int, where: str) -> list[bytes]:
        pieces: list[bytes] = []
        for i, entry in enumerate(vocab):
            # Ranks are checked over the whole list (cheap), bytes only where used: mistral-common
            # also ignores entries past the cut, so a file it loads must load here too.
            try:
                rank = entry["rank"]
            except (KeyError, TypeError):
                raise _fail(where, f"vocab entry {i} has no rank") from None
            if not isinstance(rank, int) or isinstance(rank, bool) or rank != i:
                raise _fail(
                    where, f"vocab ranks must be 0..{len(vocab) - 1} in order; entry {i} has rank {rank!r}"
                )
            if i >= n_text:
                continue
            raw = entry.get("token_bytes")
            if not isinstance(raw, str):
                raise _fail(where, f"vocab entry {i} has no token_bytes string")
            try:
                pieces.append(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError):
                raise _fail(where, f"vocab entry {i} has bad base64 token_bytes {raw[:40]!r}") from None
        return pieces

    @staticmethod
    def _read_special(raw: Any, where: str) -> list[SpecialToken]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _fail(where, "special_tokens must be a JSON list")
        out = []
        for i, entry in enumerate(raw):
            try:
                rank, name = entry["rank"], entry["token_str"]
            except (KeyError, TypeError):
                raise _fail(where, f"special_tokens entry {i} needs rank and token_str") from None
            if not isinstance(rank, int) or isinstance(rank, bool) or not isinstance(name, str):
                raise _fail(where, f"special_tokens entry {i} has a bad rank or token_str")
            out.append(SpecialToken(rank=rank, name=name, is_control=bool(entry.get("is_control", True))))
        return out

    def _read_delay(self, where: str) -> int | None:
        if self._audio is None or self._audio.get("transcription_delay_ms") is None:
            return None
        value = self._audio["transcription_delay_ms"]
        # The model works in whole milliseconds (multiples of 80); 480.0 is accepted as 480.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value <= 0
            or value != int(value)
        ):
            raise _fail(where, f"audio.transcription_delay_ms must be a positive whole number, got {value!r}")
        return int(value)

    # ---- properties -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of model ids: control ids plus text tokens (131072 for Voxtral)."""
        return self._n_special + len(self._pieces)

    @property
    def n_special(self) -> int:
        return self._n_special

    @property
    def n_text(self) -> int:
        return len(self._pieces)

    @property
    def bos_id(self) -> int:
        return self._bos

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def streaming_pad_id(self) -> int:
        return self._streaming_pad

    @property
    def streaming_word_id(self) -> int:
        return self._streaming_word

    @property
    def audio_delay_ms(self) -> int | None:
        """The file's `audio.transcription_delay_ms`, or None when it has no audio section."""
        return self._audio_delay_ms

    @property
    def audio(self) -> Mapping[str, Any] | None:
        """The raw `audio` section (read-only), or None."""
        return self._audio

    @property
    def version(self) -> str:
        return self._version

    @property
    def pattern(self) -> str:
        return self._pattern

    def special_id(self, name: str) -> int | None:
        """The id of a named control token such as "[STREAMING_PAD]", or None."""
        return self._special_ids.get(name)

    # ---- ids --------------------------------------------------------------------------------
    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is outside 0..{self.vocab_size - 1}")

    def is_text(self, token_id: int) -> bool:
        """True for ids that carry text bytes; False for control ids (and out-of-range ids)."""
        return self._n_special <= token_id < self.vocab_size

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token contributes to the text; b"" for control tokens."""
        self._check_id(token_id)
        if token_id < self._n_special:
            return b""
        return self._pieces[token_id - self._n_special]

    def id_to_piece(self, token_id: int) -> str:
        """A readable form of one token: the control name, or the text with U+FFFD for partial bytes."""
        self._check_id(token_id)
        if token_id < self._n_special:
            return self._special_names.get(token_id, _SPECIAL_TEMPLATE.format(token_id))
        return self._pieces[token_id - self._n_special].decode("utf-8", errors="replace")

    # ---- text -------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Model ids of `text` (no BOS/EOS). Text that looks like a control token stays text."""
        n = self._n_special
        return [r + n for r in self._enc.encode_ordinary(text)]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        n, size = self._n_special, self.vocab_size
        ranks = []
        for t in ids:
            t = int(t)  # numpy / torch scalars are common here
            if not 0 <= t < size:
                raise ValueError(f"token id {t} is outside 0..{size - 1}")
            if t >= n:
                ranks.append(t - n)
        return self._enc.decode_bytes(ranks)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: control ids are dropped, then the joined bytes are decoded.

        Unlike mistral-common (which decodes each run of text ids between control ids on its
        own), a character whose bytes are split by a [STREAMING_PAD] still decodes whole.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def streaming(self) -> StreamingDetokenizer:
        return StreamingDetokenizer(self)

    def __repr__(self) -> str:
        return (
            f"TekkenTokenizer({self._name!r}, vocab_size={self.vocab_size}, n_special={self._n_special}, "
            f"version={self._version!r})"
        )


class StreamingDetokenizer:
    """Turns a stream of model ids into text as it arrives, never splitting a character.

    Python's incremental UTF-8 decoder (errors="replace") does the byte bookkeeping: it holds
    back the bytes of an incomplete character and replaces a sequence as soon as it can no
    longer become valid, so an invalid byte never blocks the stream. Its output, concatenated,
    is by construction what a one-shot decode of the same bytes gives, which makes
    `"".join(push(t) for t in ids) + flush() == tokenizer.decode(ids)`.
    """

    def __init__(self, tokenizer: TekkenTokenizer) -> None:
        self._tok = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Feed one id; return the text completed by it ("" for control ids or a partial char)."""
        piece = self._tok.token_bytes(int(token_id))
        if not piece:  # control token: keep any pending bytes, the character may go on after it
            return ""
        return self._decoder.decode(piece)

    def push_many(self, ids: Iterable[int]) -> str:
        return "".join(self.push(t) for t in ids)

    def flush(self) -> str:
        """Emit whatever is held back (an unfinished character becomes U+FFFD) and start over."""
        out = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return out

    def reset(self) -> None:
        """Drop held-back bytes without emitting them."""
        self._decoder.reset()

    @property
    def pending(self) -> bytes:
        """Bytes of an unfinished character waiting for the rest of it."""
        return self._decoder.getstate()[0]
