"""`voxtral-desktop make-tiny`: a tiny random Voxtral model on disk, native and/or Q4 GGUF.

The model is the real architecture at toy sizes with random weights, so it transcribes nothing
meaningful, but every code path (loading, validation, streaming, writers, the app) runs on it in
seconds with no download. Layout of `out_dir`:

    native/            params.json, consolidated.safetensors, tekken.json
    tiny-q4.gguf       the same model through the converter (config and tokenizer inside)
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from voxtral_desktop.config import DEFAULT_DELAY_MS, N_SPECIAL_TOKENS, check_delay_ms
from voxtral_desktop.errors import ConfigError
from voxtral_desktop.synthetic.model import random_tensors, tiny_config, write_native_model
from voxtral_desktop.synthetic.tekken import build_tekken_json
from voxtral_desktop.weights.convert import convert_native_to_gguf

__all__ = ["GGUF_NAME", "NATIVE_DIR", "TINY_FORMATS", "make_tiny_model"]

log = logging.getLogger(__name__)

TINY_FORMATS = ("native", "gguf", "both")
NATIVE_DIR = "native"
GGUF_NAME = "tiny-q4.gguf"
# Enough ranks for the tokenizer builder's multi-byte test strings (é, 日本語, an emoji split
# across tokens), so the tiny model can emit them.
DEFAULT_TEXT_TOKENS = 512


def make_tiny_model(
    out_dir: str | Path,
    *,
    fmt: str = "both",
    seed: int = 0,
    n_text_tokens: int = DEFAULT_TEXT_TOKENS,
    delay_ms: int = DEFAULT_DELAY_MS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Path]:
    """Write the tiny model; returns {"native": dir} and/or {"gguf": file}.

    The same seed gives the same weights and tokenizer, so outputs are reproducible. `delay_ms`
    is written into tekken.json (`audio.transcription_delay_ms`), the default delay of a stream.
    `progress` follows the GGUF conversion (bytes written, total bytes).
    """
    if fmt not in TINY_FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: choose one of {', '.join(TINY_FORMATS)}")
    check_delay_ms(delay_ms)
    if n_text_tokens < 1:
        raise ConfigError(f"--text-tokens must be positive, got {n_text_tokens}")
    out = Path(out_dir)
    tekken = build_tekken_json(n_text_tokens, delay_ms=delay_ms)
    tekken_bytes = (json.dumps(tekken, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    config = tiny_config(decoder_vocab_size=N_SPECIAL_TOKENS + n_text_tokens)
    tensors = random_tensors(config, seed=seed)

    written: dict[str, Path] = {}
    if fmt in ("native", "both"):
        written["native"] = write_native_model(out / NATIVE_DIR, config, tensors, tekken_bytes)
        log.info("wrote native model %s", written["native"])
    if fmt in ("gguf", "both"):
        gguf = out / GGUF_NAME
        if "native" in written:
            convert_native_to_gguf(written["native"], gguf, progress=progress)
        else:
            # The converter reads a native directory; a GGUF-only request needs one only briefly.
            with tempfile.TemporaryDirectory(prefix="voxtral-tiny-") as tmp:
                src = write_native_model(Path(tmp) / NATIVE_DIR, config, tensors, tekken_bytes)
                convert_native_to_gguf(src, gguf, progress=progress)
        written["gguf"] = gguf
        log.info("wrote GGUF model %s", gguf)
    return written
