"""Convert a Mistral-native checkpoint directory into our Q4_0 GGUF (optionally byte-split).

Every LINEAR/EMBEDDING tensor becomes Q4_0, bit-exactly as ggml quantises (gguf-py's
`quantize`, fed f32: bf16 -> f32 is exact), and every VECTOR/CONV tensor F32. The file carries
our metadata (see `voxtral_gguf`), so it is self-contained: config and tokenizer inside.

Memory: tensors are streamed in `expected_tensors` order, row chunks of about 64 MB of f32 at a
time (Q4_0 blocks are independent, so chunking does not change a single bit); a few chunks are
quantised in parallel threads (numpy releases the GIL). Peak host memory is a few hundred MB.

Safety: the output is written to a temporary name in the destination directory and renamed only
when complete (after fsync), so an error (disk full, Ctrl-C) never leaves a half-written model.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from voxtral_desktop.errors import ConfigError, ModelFileError
from voxtral_desktop.weights.gguf_writer import MetadataValue, PlannedTensor, align, encode_header, file_size
from voxtral_desktop.weights.names import TensorSpec, expected_tensors
from voxtral_desktop.weights.native import NativeModel, NativeTensors, open_native
from voxtral_desktop.weights.voxtral_gguf import (
    ARCHITECTURE,
    FORMAT_VERSION,
    KEY_ARCHITECTURE,
    KEY_FORMAT_VERSION,
    KEY_NAME,
    KEY_PARAMS_JSON,
    KEY_TEKKEN_JSON,
)

Progress = Callable[[int, int], None]

CHUNK_BYTES = 64 << 20  # f32 bytes per quantisation job
LLAMA_FTYPE_MOSTLY_Q4_0 = 2  # general.file_type, as llama.cpp labels Q4_0 models
GGML_QUANT_VERSION = 2

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """'512M' / '512m' / '1G' / '1.5GiB' / '4096' -> bytes (binary units, as `split -b` uses)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise ConfigError(
            f"invalid size {text!r}: use a number with an optional K, M or G suffix (e.g. 512M)"
        )
    size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()])
    if size < 1:
        raise ConfigError(f"invalid size {text!r}: must be at least one byte")
    return size


def shard_names(n: int) -> list[str]:
    """`split`-style names shard-aa, shard-ab, ...: one suffix length so that names sort in order."""
    width = 2
    while 26**width < n:
        width += 1
    names = []
    for i in range(n):
        letters = []
        for _ in range(width):
            i, r = divmod(i, 26)
            letters.append(chr(ord("a") + r))
        names.append("shard-" + "".join(reversed(letters)))
    return names


def plan(model: NativeModel) -> list[PlannedTensor]:
    return [
        PlannedTensor(
            s.name, s.shape, GGMLQuantizationType.Q4_0 if s.quantizable else GGMLQuantizationType.F32
        )
        for s in expected_tensors(model.config)
    ]


def metadata(model: NativeModel) -> list[MetadataValue]:
    return [
        MetadataValue(KEY_ARCHITECTURE, ARCHITECTURE),
        MetadataValue(KEY_NAME, model.path.resolve().name or "voxtral"),
        MetadataValue("general.file_type", LLAMA_FTYPE_MOSTLY_Q4_0),
        MetadataValue("general.quantization_version", GGML_QUANT_VERSION),
        MetadataValue(KEY_FORMAT_VERSION, FORMAT_VERSION),
        MetadataValue(KEY_PARAMS_JSON, json.dumps(model.config.to_params(), separators=(",", ":"))),
        MetadataValue(KEY_TEKKEN_JSON, model.tekken_json.decode("utf-8")),
    ]


def convert_native_to_gguf(
    src_dir: str | Path,
    out_path: str | Path,
    *,
    shard_size: int | None = None,
    progress: Progress | None = None,
    tokenizer_path: str | Path | None = None,
) -> list[Path]:
    """Write `src_dir` as a Q4_0 GGUF at `out_path` and return the files written.

    With `shard_size`, `out_path` is a directory that receives byte-split pieces shard-aa,
    shard-ab, ... of `shard_size` bytes (their concatenation is the GGUF). `progress` is called
    with (bytes written, total bytes).
    """
    src, out = Path(src_dir), Path(out_path)
    if not src.exists():
        raise ModelFileError(f"no such file or directory: {src}")
    model = open_native(src, Path(tokenizer_path) if tokenizer_path is not None else None)
    tensors = plan(model)
    header = encode_header(metadata(model), tensors)
    total = file_size(header, tensors)
    if shard_size is not None and shard_size < 1:
        raise ConfigError(f"shard size must be positive, got {shard_size}")
    _check_destination(out, sharded=shard_size is not None)

    sink: _OutputSink | None = None
    try:
        sink = _OutputSink(out, total, shard_size)
        done = 0
        for data in _file_pieces(header, model, tensors):
            sink.write(data)
            done += len(data)
            if progress is not None:
                progress(done, total)
        return sink.commit()
    except OSError as exc:
        if sink is not None:
            sink.abort()
        raise ModelFileError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        if sink is not None:
            sink.abort()
        raise


def _check_destination(out: Path, *, sharded: bool) -> None:
    if sharded:
        if out.is_file():
            raise ModelFileError(f"{out} is a file; sharded output needs a directory path")
        if out.is_dir() and any(out.iterdir()):
            raise ModelFileError(f"{out} already exists and is not empty")
    elif out.is_dir():
        raise ModelFileError(f"{out} is a directory; give a file path for the GGUF")


def _file_pieces(header: bytes, model: NativeModel, plan_: list[PlannedTensor]) -> Iterator[memoryview]:
    """The whole file as a stream of byte buffers, in order."""
    yield memoryview(header)
    specs = {s.name: s for s in expected_tensors(model.config)}
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="q4") as pool:
        pending: deque[Future[np.ndarray]] = deque()
        for planned in plan_:
            for job in _tensor_jobs(model.tensors, specs[planned.name]):
                pending.append(pool.submit(job))
                while len(pending) > workers:  # bounded: at most workers + 1 chunks in memory
                    yield _bytes(pending.popleft().result())
            while pending:  # finish this tensor before writing its padding
                yield _bytes(pending.popleft().result())
            pad = align(planned.nbytes) - planned.nbytes
            if pad:
                yield memoryview(bytes(pad))


def _bytes(array: np.ndarray) -> memoryview:
    return np.ascontiguousarray(array).data.cast("B")


def _tensor_jobs(tensors: NativeTensors, spec: TensorSpec) -> Iterator[Callable[[], np.ndarray]]:
    """Zero-argument jobs whose results, concatenated, are the tensor's GGUF bytes."""
    if not spec.quantizable:
        values = tensors[spec.name].to(torch.float32).contiguous().numpy()
        yield functools.partial(np.asarray, values)
        return
    rows, cols = spec.shape
    step = max(1, CHUNK_BYTES // (cols * 4))
    for start in range(0, rows, step):
        # Read on this (main) thread; quantise on a worker.
        chunk = tensors.rows(spec.name, start, min(rows, start + step)).to(torch.float32).numpy()
        yield functools.partial(quantize, chunk, GGMLQuantizationType.Q4_0)


class _OutputSink:
    """Writes one file, or consecutive shard files, under temporary names until `commit`."""

    def __init__(self, out: Path, total: int, shard_size: int | None) -> None:
        self.out = out
        self.sharded = shard_size is not None
        out.parent.mkdir(parents=True, exist_ok=True)
        # Our own unique name rather than tempfile.mkstemp: mkstemp creates mode 0600, and the
        # renamed model should get the usual permissions (0666 minus the umask), like any file.
        self.temp = out.parent / f".{out.name}.{secrets.token_hex(4)}.partial"
        if shard_size is None:
            os.close(os.open(self.temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            self.targets = [self.temp]
            self.limit = total
        else:
            self.temp.mkdir()
            n = max(1, -(-total // shard_size))
            self.targets = [self.temp / name for name in shard_names(n)]
            self.limit = shard_size
        self.total = total
        self.written = 0
        self.index = 0
        self.used = 0  # bytes in the current target
        self.handle = open(self.targets[0], "wb")  # closed in commit() or abort()

    def write(self, data: memoryview) -> None:
        while len(data):
            if self.used == self.limit:
                self._next_target()
            take = min(len(data), self.limit - self.used)
            self.handle.write(data[:take])
            self.used += take
            self.written += take
            data = data[take:]

    def _next_target(self) -> None:
        self._close_current()
        self.index += 1
        self.handle = open(self.targets[self.index], "wb")
        self.used = 0

    def _close_current(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())  # durable before the rename makes the output visible
        self.handle.close()

    def commit(self) -> list[Path]:
        self._close_current()
        if self.written != self.total or self.index != len(self.targets) - 1:
            raise RuntimeError("converter wrote a different number of bytes than it planned")
        if not self.sharded:
            os.replace(self.temp, self.out)
            return [self.out]
        if self.out.is_dir():
            self.out.rmdir()  # checked empty before we started
        os.replace(self.temp, self.out)
        return [self.out / t.name for t in self.targets]

    def abort(self) -> None:
        try:
            self.handle.close()
        except OSError:
            pass
        if self.sharded:
            shutil.rmtree(self.temp, ignore_errors=True)
        else:
            self.temp.unlink(missing_ok=True)
