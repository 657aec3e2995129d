"""Open any supported checkpoint, recognised by its content (never by its file name).

1. A Mistral-native directory: params.json + consolidated.safetensors (+ tekken.json).
2. A GGUF file written by our converter: magic b"GGUF" plus our `voxtral.*` metadata (config and
   tokenizer inside).
3. The seed's published `voxtral-q4.gguf`: the same tensor names and no metadata; the config is
   inferred from tensor shapes and the tokenizer comes from `tokenizer_path` or a tekken.json
   beside the file.
Both GGUF kinds may also be a directory of raw byte-split shards (`split -b 512m`: the files
sorted by name, the first starting with b"GGUF"), read in place without joining them on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.errors import ModelFileError, TokenizerError
from voxtral_desktop.kernels.q4 import Q4Weight
from voxtral_desktop.weights.gguf_file import GGUFFile, has_gguf_magic, read_gguf
from voxtral_desktop.weights.names import expected_tensors
from voxtral_desktop.weights.native import (
    PARAMS_JSON,
    SAFETENSORS,
    TEKKEN_JSON,
    check_tekken,
    is_native_dir,
    open_native,
    read_tekken,
)
from voxtral_desktop.weights.shards import list_shards
from voxtral_desktop.weights.validate import check_tensor_set
from voxtral_desktop.weights.voxtral_gguf import KEY_TEKKEN_JSON, config_from_metadata, infer_config, is_ours

Weight = torch.Tensor | Q4Weight


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint: every tensor of `expected_tensors(config)` with the right shape.

    `tensors` values are float torch tensors (dtype as stored: bf16, f16 or f32) or `Q4Weight`.
    For GGUF they are zero-copy views of the memory-mapped file; for a native directory the
    mapping is lazy and reads each tensor from disk when it is accessed. `tekken_json` is the raw
    tokenizer file (None only for checkpoints built in memory).
    """

    config: ModelConfig
    tensors: Mapping[str, Weight]
    tekken_json: bytes | None
    description: str


def open_checkpoint(path: str | Path, tokenizer_path: str | Path | None = None) -> Checkpoint:
    """Detect the format of `path` by content, validate it, and return its tensors.

    `tokenizer_path` overrides any tokenizer found in or beside the checkpoint.
    Raises ModelFileError (bad model) or TokenizerError (missing or bad tokenizer).
    """
    path = Path(path)
    tok = Path(tokenizer_path) if tokenizer_path is not None else None
    if not path.exists():
        raise ModelFileError(f"no such file or directory: {path}")
    if path.is_dir():
        if is_native_dir(path):
            return _native_checkpoint(path, tok)
        shards = list_shards(path)
        if shards and has_gguf_magic(shards[0]):
            return _gguf_checkpoint(read_gguf(shards), path, tok, shards=len(shards))
        raise ModelFileError(
            f"{path} is not a Voxtral model: expected {PARAMS_JSON} + {SAFETENSORS} (+ {TEKKEN_JSON}), "
            "or GGUF shards (files sorted by name, the first starting with 'GGUF')"
        )
    if not has_gguf_magic(path):
        if path.stat().st_size == 0:
            raise ModelFileError(f"{path} is empty (an interrupted download?)")
        raise ModelFileError(
            f"{path} is not a Voxtral model: expected a GGUF file "
            f"or a directory with {PARAMS_JSON} and {SAFETENSORS}"
        )
    return _gguf_checkpoint(read_gguf([path]), path, tok, shards=0)


def _native_checkpoint(path: Path, tokenizer_path: Path | None) -> Checkpoint:
    model = open_native(path, tokenizer_path)
    return Checkpoint(
        config=model.config,
        tensors=model.tensors,
        tekken_json=model.tekken_json,
        description=f"Mistral-native {model.source_dtype} safetensors {path}",
    )


def _gguf_checkpoint(gguf: GGUFFile, path: Path, tokenizer_path: Path | None, *, shards: int) -> Checkpoint:
    where = gguf.label
    found = {name: (info.shape, info.type_name) for name, info in gguf.tensors.items()}
    ours = is_ours(gguf.metadata)
    if ours:
        config = config_from_metadata(gguf.metadata, where)
    else:
        config = infer_config({name: info.shape for name, info in gguf.tensors.items()}, where)
    check_tensor_set(config, found, where)

    if tokenizer_path is not None:
        tekken = read_tekken(tokenizer_path)
    elif ours and isinstance(gguf.metadata.get(KEY_TEKKEN_JSON), str):
        tekken = gguf.metadata[KEY_TEKKEN_JSON].encode("utf-8")
        check_tekken(tekken, f"{where} ({KEY_TEKKEN_JSON})")
    else:
        beside = (path if shards else path.parent) / TEKKEN_JSON
        if not beside.is_file():
            raise TokenizerError(
                f"{where} has no tokenizer inside and no {TEKKEN_JSON} beside it: "
                "pass --tokenizer tekken.json"
            )
        tekken = read_tekken(beside)

    tensors = {spec.name: gguf.load(spec.name) for spec in expected_tensors(config)}
    # Name the file by how its matmul weights are stored (norms and biases are always float).
    types = sorted({gguf.tensors[s.name].type_name for s in expected_tensors(config) if s.quantizable})
    layout = "(voxtral-desktop)" if ours else "(seed layout, config inferred)"
    sharded = f", {shards} shards" if shards > 1 else ""
    return Checkpoint(
        config, MappingProxyType(tensors), tekken, f"{'/'.join(types)} GGUF {layout} {path}{sharded}"
    )
