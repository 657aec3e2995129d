"""A small, defensive GGUF reader (format versions 2 and 3, little-endian).

gguf-py's `GGUFReader` does not check counts, lengths and offsets against the file size (a
corrupt header surfaces as a numpy error deep inside it, or not at all), and it cannot read a file
that only exists as byte-split shards. This parser reads through `ConcatenatedFile` and checks
every count, length and offset against the bytes that are really there BEFORE it allocates or
builds anything, so a truncated download or a random file renamed to .gguf fails fast with one
`ModelFileError` line.

Layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): magic "GGUF", u32 version,
u64 n_tensors, u64 n_kv, the KV pairs, the tensor infos (name, u32 n_dims, u64 dims innermost
first, u32 ggml type, u64 offset relative to the data section), padding to `general.alignment`
(default 32), then the tensor data.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from voxtral_desktop.errors import ModelFileError
from voxtral_desktop.kernels.q4 import Q4Weight
from voxtral_desktop.weights.shards import ConcatenatedFile

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 1 << 40  # far above any real tensor; stops overflowing products early
MAX_ARRAY_DEPTH = 4

# Smallest possible encodings, used to reject absurd counts before looping over them.
_MIN_KV_BYTES = 8 + 4 + 1  # empty key, value type, one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # empty name, n_dims, one dim, type, offset

_SCALAR_FORMATS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}

# ggml types we can hand to the model, and how their bytes become a torch tensor.
_FLOAT_DTYPES: dict[GGMLQuantizationType, tuple[np.dtype, torch.dtype | None]] = {
    GGMLQuantizationType.F32: (np.dtype("<f4"), None),
    GGMLQuantizationType.F16: (np.dtype("<f2"), None),
    # numpy has no bfloat16: read the raw 16-bit words and reinterpret them in torch.
    GGMLQuantizationType.BF16: (np.dtype("<i2"), torch.bfloat16),
}


class _Corrupt(Exception):
    """Internal: a structural problem; `read_gguf` turns it into one ModelFileError line."""


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # torch order (outermost first): GGUF's dims reversed
    ggml_type: GGMLQuantizationType
    offset: int  # absolute offset in the (concatenated) file
    nbytes: int

    @property
    def type_name(self) -> str:
        return self.ggml_type.name


@dataclass(frozen=True)
class GGUFFile:
    source: ConcatenatedFile
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensorInfo]  # in file order
    alignment: int
    data_offset: int

    @property
    def label(self) -> str:
        return self.source.label

    def load(self, name: str) -> torch.Tensor | Q4Weight:
        """The tensor `name`: float types as torch tensors (dtype kept), Q4_0 as `Q4Weight`.

        Zero-copy views of the mapped file wherever the bytes lie in one shard and are aligned.
        """
        info = self.tensors[name]
        raw = self.source.array(info.offset, info.nbytes)
        if info.ggml_type == GGMLQuantizationType.Q4_0:
            if len(info.shape) != 2:
                raise ModelFileError(f"{self.label}: Q4_0 tensor {name} must be 2-D, got shape {info.shape}")
            rows, cols = info.shape
            return Q4Weight(torch.from_numpy(raw.reshape(rows, -1)), (rows, cols))
        if info.ggml_type not in _FLOAT_DTYPES:
            raise ModelFileError(f"{self.label}: tensor {name} has unsupported type {info.type_name}")
        np_dtype, torch_view = _FLOAT_DTYPES[info.ggml_type]
        if raw.ctypes.data % np_dtype.itemsize:
            raw = raw.copy()  # a shard boundary left it unaligned; a fresh buffer is aligned
        tensor = torch.from_numpy(raw.view(np_dtype).reshape(info.shape))
        return tensor.view(torch_view) if torch_view is not None else tensor


def read_gguf(paths: Sequence[Path]) -> GGUFFile:
    """Parse and validate the header of a GGUF file (one path) or of its byte-split shards."""
    source = ConcatenatedFile(paths)
    try:
        return _Parser(source).parse()
    except _Corrupt as exc:
        raise ModelFileError(f"{source.label} is not a valid GGUF file: {exc}") from None


def has_gguf_magic(path: Path) -> bool:
    """True when the file starts with b"GGUF" (format detection by content, not by name)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


class _Parser:
    def __init__(self, source: ConcatenatedFile) -> None:
        self.src = source
        self.pos = 0

    # ---- primitive reads, each bounds-checked -----------------------------------------
    def _take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.src.size:
            raise _Corrupt(
                f"{what} at byte {self.pos} needs {n} bytes but the file ends at byte {self.src.size} "
                "(truncated download?)"
            )
        data = self.src.read(self.pos, n)
        self.pos += n
        return data

    def _unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt), what))[0]

    def _string(self, what: str) -> bytes:
        length = self._unpack("<Q", f"length of {what}")
        if length > self.src.size - self.pos:
            raise _Corrupt(f"{what} at byte {self.pos} claims {length} bytes, past the end of the file")
        return self._take(length, what)

    def _text(self, what: str) -> str:
        raw = self._string(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt(f"{what} at byte {self.pos - len(raw)} is not UTF-8") from None

    # ---- metadata values ------------------------------------------------------------------
    def _value(self, vtype: int, key: str, depth: int = 0) -> Any:
        if vtype in _SCALAR_FORMATS:
            return self._unpack(_SCALAR_FORMATS[vtype], f"value of {key!r}")
        if vtype == GGUFValueType.STRING:
            raw = self._string(f"value of {key!r}")
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw  # foreign files may hold raw bytes; we never need those values
        if vtype == GGUFValueType.ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise _Corrupt(f"metadata {key!r} nests arrays deeper than {MAX_ARRAY_DEPTH}")
            item_type = self._unpack("<I", f"array type of {key!r}")
            count = self._unpack("<Q", f"array length of {key!r}")
            if item_type in _SCALAR_FORMATS:
                fmt = _SCALAR_FORMATS[item_type]
                size = struct.calcsize(fmt)
                if count > (self.src.size - self.pos) // size:
                    raise _Corrupt(f"array {key!r} claims {count} items, past the end of the file")
                return np.frombuffer(self._take(count * size, f"array {key!r}"), dtype=fmt).tolist()
            min_item = 8 if item_type == GGUFValueType.STRING else 12
            if item_type not in (GGUFValueType.STRING, GGUFValueType.ARRAY):
                raise _Corrupt(f"array {key!r} has unknown item type {item_type}")
            if count > (self.src.size - self.pos) // min_item:
                raise _Corrupt(f"array {key!r} claims {count} items, past the end of the file")
            return [self._value(item_type, key, depth + 1) for _ in range(count)]
        raise _Corrupt(f"metadata {key!r} has unknown value type {vtype}")

    # ---- the whole header -----------------------------------------------------------------
    def parse(self) -> GGUFFile:
        if self.src.size < 4 or self.src.read(0, 4) != GGUF_MAGIC:
            head = self.src.read(0, min(4, self.src.size))
            raise _Corrupt(f"bad magic {head!r} (expected b'GGUF')")
        self.pos = 4
        version = self._unpack("<I", "version")
        if version not in SUPPORTED_VERSIONS:
            if int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
                raise _Corrupt("big-endian GGUF files are not supported")
            raise _Corrupt(f"unsupported GGUF version {version} (supported: 2 and 3)")
        n_tensors = self._unpack("<Q", "tensor count")
        n_kv = self._unpack("<Q", "metadata count")
        remaining = self.src.size - self.pos
        if (
            n_kv > remaining // _MIN_KV_BYTES
            or n_tensors > remaining // _MIN_TENSOR_INFO_BYTES
            or (n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > remaining)
        ):
            raise _Corrupt(
                f"header claims {n_tensors} tensors and {n_kv} metadata entries, "
                f"more than a {self.src.size}-byte file can hold"
            )

        metadata: dict[str, Any] = {}
        for i in range(n_kv):
            key = self._text(f"metadata key #{i}")
            vtype = self._unpack("<I", f"type of {key!r}")
            if key in metadata:
                raise _Corrupt(f"duplicate metadata key {key!r}")
            metadata[key] = self._value(vtype, key)

        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if (
            not isinstance(alignment, int)
            or alignment <= 0
            or alignment & (alignment - 1)
            or alignment > 1 << 20
        ):
            raise _Corrupt(f"general.alignment {alignment!r} is not a power of two")

        raw_infos = [self._tensor_info(i, alignment) for i in range(n_tensors)]
        data_offset = _align(self.pos, alignment)
        tensors: dict[str, GGUFTensorInfo] = {}
        for name, shape, gtype, rel_offset, nbytes in raw_infos:
            if name in tensors:
                raise _Corrupt(f"duplicate tensor {name}")
            end = data_offset + rel_offset + nbytes
            if end > self.src.size:
                raise _Corrupt(
                    f"tensor {name} ends at byte {end} but the file has only {self.src.size} bytes "
                    "(truncated download or missing shard?)"
                )
            tensors[name] = GGUFTensorInfo(name, shape, gtype, data_offset + rel_offset, nbytes)
        by_offset = sorted(tensors.values(), key=lambda t: t.offset)
        for a, b in itertools.pairwise(by_offset):
            if a.offset + a.nbytes > b.offset:
                raise _Corrupt(f"tensors {a.name} and {b.name} overlap")
        # Shards are whatever files sit in the directory: a stray file sorted after the real
        # pieces would silently become trailing bytes. The data ends within one alignment unit
        # of the last tensor (its padding), so more than that is a file that does not belong.
        data_end = by_offset[-1].offset + by_offset[-1].nbytes if by_offset else data_offset
        if len(self.src.paths) > 1 and self.src.size - data_end >= alignment:
            raise _Corrupt(
                f"{self.src.size - data_end} bytes follow the last tensor: "
                "is a file in the directory not one of the shards?"
            )
        return GGUFFile(self.src, version, metadata, tensors, alignment, data_offset)

    def _tensor_info(
        self, i: int, alignment: int
    ) -> tuple[str, tuple[int, ...], GGMLQuantizationType, int, int]:
        name = self._text(f"tensor name #{i}")
        n_dims = self._unpack("<I", f"rank of {name}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise _Corrupt(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        dims = struct.unpack(f"<{n_dims}Q", self._take(8 * n_dims, f"dimensions of {name}"))
        elements = 1
        for d in dims:
            elements *= d
            if d == 0 or elements > MAX_ELEMENTS:
                raise _Corrupt(f"tensor {name} has an absurd shape {tuple(reversed(dims))}")
        type_id = self._unpack("<I", f"type of {name}")
        try:
            gtype = GGMLQuantizationType(type_id)
            block, type_size = GGML_QUANT_SIZES[gtype]
        except (ValueError, KeyError):
            raise _Corrupt(f"tensor {name} has unknown ggml type {type_id}") from None
        if dims[0] % block:
            raise _Corrupt(
                f"tensor {name}: row length {dims[0]} is not a multiple of the {gtype.name} block {block}"
            )
        nbytes = elements // block * type_size
        offset = self._unpack("<Q", f"offset of {name}")
        if offset % alignment:
            raise _Corrupt(f"tensor {name} data offset {offset} is not aligned to {alignment} bytes")
        return name, tuple(int(d) for d in reversed(dims)), gtype, offset, nbytes
