"""Encode a GGUF v3 header for tensors whose data is streamed afterwards.

gguf-py's GGUFWriter can stream tensor data too, but it opens its own files (we need a temp file
or a chain of shard files behind one `write`) and it silently drops empty strings. Knowing every
tensor's type and shape up front is enough to lay out the whole file, so the header is built in
memory here (a few MB at most: the tokenizer JSON dominates) and the converter streams the data.
The byte layout is what gguf-py writes: each tensor padded to the alignment, data section aligned.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from voxtral_desktop.weights.gguf_file import DEFAULT_ALIGNMENT, GGUF_MAGIC

GGUF_WRITE_VERSION = 3


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    shape: tuple[int, ...]  # torch order; written to the file innermost first
    ggml_type: GGMLQuantizationType

    @property
    def nbytes(self) -> int:
        block, type_size = GGML_QUANT_SIZES[self.ggml_type]
        elements = 1
        for d in self.shape:
            elements *= d
        if self.shape[-1] % block:
            raise ValueError(f"{self.name}: row length {self.shape[-1]} is not a multiple of {block}")
        return elements // block * type_size


@dataclass(frozen=True)
class MetadataValue:
    """A UINT32 (int) or STRING (str) metadata value: all our converter writes."""

    key: str
    value: int | str


def align(n: int, alignment: int = DEFAULT_ALIGNMENT) -> int:
    return (n + alignment - 1) // alignment * alignment


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _kv(item: MetadataValue) -> bytes:
    if isinstance(item.value, bool) or not isinstance(item.value, (int, str)):
        raise TypeError(f"unsupported metadata value for {item.key}: {type(item.value).__name__}")
    if isinstance(item.value, int):
        return _string(item.key) + struct.pack("<II", GGUFValueType.UINT32, item.value)
    return _string(item.key) + struct.pack("<I", GGUFValueType.STRING) + _string(item.value)


def encode_header(metadata: Sequence[MetadataValue], tensors: Sequence[PlannedTensor]) -> bytes:
    """Magic .. tensor infos, padded so the first tensor starts at an aligned offset."""
    out = bytearray(GGUF_MAGIC)
    out += struct.pack("<IQQ", GGUF_WRITE_VERSION, len(tensors), len(metadata))
    for item in metadata:
        out += _kv(item)
    offset = 0
    for t in tensors:
        out += _string(t.name)
        out += struct.pack("<I", len(t.shape))
        out += struct.pack(f"<{len(t.shape)}Q", *reversed(t.shape))
        out += struct.pack("<IQ", t.ggml_type, offset)
        offset += align(t.nbytes)
    out += bytes(align(len(out)) - len(out))
    return bytes(out)


def file_size(header: bytes, tensors: Sequence[PlannedTensor]) -> int:
    return len(header) + sum(align(t.nbytes) for t in tensors)
