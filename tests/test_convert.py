"""Native -> Q4_0 GGUF conversion: bit-exactness, shards, progress, atomicity on failure."""

from __future__ import annotations

import errno
import itertools
import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from test_weights import placeholder_tekken  # one placeholder tokenizer for both test modules

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.errors import ConfigError, ModelFileError, TokenizerError
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0
from voxtral_desktop.synthetic.model import random_tensors, tiny_config, write_native_model
from voxtral_desktop.weights import convert
from voxtral_desktop.weights.checkpoint import open_checkpoint
from voxtral_desktop.weights.convert import convert_native_to_gguf, parse_size, shard_names
from voxtral_desktop.weights.names import expected_tensors
from voxtral_desktop.weights.voxtral_gguf import (
    FORMAT_VERSION,
    KEY_FORMAT_VERSION,
    KEY_PARAMS_JSON,
    KEY_TEKKEN_JSON,
)


def dense(w: torch.Tensor | Q4Weight) -> torch.Tensor:
    assert isinstance(w, torch.Tensor)
    return w


@pytest.fixture(scope="module")
def tiny() -> ModelConfig:
    return tiny_config()


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float32], ids=["bf16", "f32"])
def native(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny: ModelConfig
) -> Path:
    out = tmp_path_factory.mktemp("native") / "Voxtral-Tiny"
    return write_native_model(
        out, tiny, random_tensors(tiny, seed=11, dtype=request.param), placeholder_tekken()
    )


@pytest.fixture(scope="module")
def converted(native: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "tiny.gguf"
    assert convert_native_to_gguf(native, out) == [out]
    return out


def test_roundtrip_bit_exact(native: Path, converted: Path, tiny: ModelConfig) -> None:
    source = open_checkpoint(native)
    ckpt = open_checkpoint(converted)
    assert ckpt.config == tiny == source.config
    assert ckpt.tekken_json == placeholder_tekken()
    for spec in expected_tensors(tiny):
        w, src = ckpt.tensors[spec.name], dense(source.tensors[spec.name]).to(torch.float32).numpy()
        if spec.quantizable:
            assert isinstance(w, Q4Weight) and w.shape == spec.shape
            want = quantize(src, GGMLQuantizationType.Q4_0)
            assert np.array_equal(w.blocks.numpy(), want), spec.name
            ref = dequantize(want, GGMLQuantizationType.Q4_0)
            ours = dequantize_q4_0(w.blocks).numpy()
            assert ours.view(np.uint32).tobytes() == ref.astype(np.float32).view(np.uint32).tobytes()
        else:
            assert isinstance(w, torch.Tensor) and w.dtype == torch.float32
            assert np.array_equal(w.numpy(), src), spec.name


def test_gguf_py_reads_our_file(converted: Path, tiny: ModelConfig) -> None:
    """An independent reader agrees on metadata, names, types, shapes and bytes."""
    reader = gguf.GGUFReader(str(converted))
    fields = {name: f.contents() for name, f in reader.fields.items()}
    assert fields["general.architecture"] == "voxtral_realtime"
    assert fields[KEY_FORMAT_VERSION] == FORMAT_VERSION
    assert ModelConfig.from_params(json.loads(fields[KEY_PARAMS_JSON])) == tiny
    assert fields[KEY_TEKKEN_JSON].encode("utf-8") == placeholder_tekken()
    ckpt = open_checkpoint(converted)
    specs = expected_tensors(tiny)
    assert [t.name for t in reader.tensors] == [s.name for s in specs]  # written in table order
    for t, spec in zip(reader.tensors, specs, strict=True):
        assert tuple(int(d) for d in reversed(t.shape)) == spec.shape
        w = ckpt.tensors[spec.name]
        if spec.quantizable:
            assert t.tensor_type == GGMLQuantizationType.Q4_0
            assert isinstance(w, Q4Weight) and np.array_equal(np.asarray(t.data), w.blocks.numpy())
        else:
            assert t.tensor_type == GGMLQuantizationType.F32
            assert np.array_equal(np.asarray(t.data), dense(w).numpy())


def test_byte_identical_to_gguf_py_writer(native: Path, converted: Path, tmp_path: Path) -> None:
    """Same keys, tensors and order through gguf-py's GGUFWriter give the very same file."""
    fields = {name: f.contents() for name, f in gguf.GGUFReader(str(converted)).fields.items()}
    source = open_checkpoint(native)
    writer = gguf.GGUFWriter(str(tmp_path / "ref.gguf"), arch="voxtral_realtime")
    writer.add_name(fields["general.name"])
    writer.add_uint32("general.file_type", fields["general.file_type"])
    writer.add_uint32("general.quantization_version", fields["general.quantization_version"])
    writer.add_uint32(KEY_FORMAT_VERSION, FORMAT_VERSION)
    writer.add_string(KEY_PARAMS_JSON, fields[KEY_PARAMS_JSON])
    writer.add_string(KEY_TEKKEN_JSON, fields[KEY_TEKKEN_JSON])
    for spec in expected_tensors(source.config):
        arr = dense(source.tensors[spec.name]).to(torch.float32).numpy()
        if spec.quantizable:
            writer.add_tensor(
                spec.name, quantize(arr, GGMLQuantizationType.Q4_0), raw_dtype=GGMLQuantizationType.Q4_0
            )
        else:
            writer.add_tensor(spec.name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert (tmp_path / "ref.gguf").read_bytes() == converted.read_bytes()


def test_chunked_quantisation_is_identical(
    native: Path, converted: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(convert, "CHUNK_BYTES", 3 * 64 * 4)  # 3 rows of 64 floats per job
    out = tmp_path / "chunked.gguf"
    convert_native_to_gguf(native, out)
    assert out.read_bytes() == converted.read_bytes()


@pytest.mark.parametrize("size", [1000, 4096, 123_457, 10**8])
def test_shards(native: Path, converted: Path, tmp_path: Path, size: int) -> None:
    out = tmp_path / "web"
    paths = convert_native_to_gguf(native, out, shard_size=size)
    whole = converted.read_bytes()
    assert len(paths) == -(-len(whole) // size)
    assert [p.name for p in paths] == sorted(p.name for p in out.iterdir())
    assert all(p.stat().st_size == size for p in paths[:-1])
    assert b"".join(p.read_bytes() for p in paths) == whole
    ckpt, ref = open_checkpoint(out), open_checkpoint(converted)
    assert ckpt.config == ref.config and ckpt.tekken_json == ref.tekken_json
    for name, w in ref.tensors.items():
        a = w.blocks if isinstance(w, Q4Weight) else w
        b = ckpt.tensors[name]
        b = b.blocks if isinstance(b, Q4Weight) else b
        assert torch.equal(a, b), name


def test_progress(native: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = tmp_path / "p.gguf"
    convert_native_to_gguf(native, out, progress=lambda done, total: calls.append((done, total)))
    size = out.stat().st_size
    assert calls[-1] == (size, size)
    assert all(t == size for _, t in calls)
    assert all(a[0] < b[0] for a, b in itertools.pairwise(calls))


def test_disk_full_leaves_nothing(native: Path, tmp_path: Path, monkeypatch) -> None:
    real_write = convert._OutputSink.write

    def failing_write(self, data) -> None:  # type: ignore[no-untyped-def]
        if self.written > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, data)

    monkeypatch.setattr(convert._OutputSink, "write", failing_write)
    dest = tmp_path / "dest"
    dest.mkdir()
    for out, shard_size in ((dest / "m.gguf", None), (dest / "shards", 5000)):
        with pytest.raises(ModelFileError) as info:
            convert_native_to_gguf(native, out, shard_size=shard_size)
        assert str(info.value) == f"cannot write {out}: No space left on device"
        assert list(dest.iterdir()) == []


def test_interrupt_leaves_nothing(native: Path, tmp_path: Path) -> None:
    def interrupt(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert_native_to_gguf(native, tmp_path / "m.gguf", progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs(native: Path, converted: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    out.write_bytes(b"old")
    convert_native_to_gguf(native, out)  # replaced atomically
    assert out.read_bytes() == converted.read_bytes()
    with pytest.raises(ModelFileError, match="is a directory"):
        convert_native_to_gguf(native, tmp_path)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(ModelFileError, match="not empty"):
        convert_native_to_gguf(native, busy, shard_size=1000)
    with pytest.raises(ModelFileError, match="no such file"):
        convert_native_to_gguf(tmp_path / "missing", tmp_path / "y.gguf")
    empty = tmp_path / "empty-out"
    empty.mkdir()
    assert len(convert_native_to_gguf(native, empty, shard_size=10**6)) == 1


def test_tokenizer_required(tmp_path: Path, tiny: ModelConfig) -> None:
    src = write_native_model(tmp_path / "m", tiny, random_tensors(tiny, seed=1), placeholder_tekken())
    (src / "tekken.json").unlink()
    with pytest.raises(TokenizerError, match="--tokenizer"):
        convert_native_to_gguf(src, tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()
    tok = tmp_path / "tok.json"
    tok.write_bytes(placeholder_tekken())
    convert_native_to_gguf(src, tmp_path / "a.gguf", tokenizer_path=tok)
    assert open_checkpoint(tmp_path / "a.gguf").tekken_json == placeholder_tekken()


def test_parse_size() -> None:
    assert parse_size("512M") == parse_size("512m") == parse_size("512MiB") == 512 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("1.5k") == 1536
    assert parse_size("4096") == 4096
    for bad in ("", "M", "-1M", "12Q", "0"):
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_shard_names_sort() -> None:
    assert shard_names(3) == ["shard-aa", "shard-ab", "shard-ac"]
    many = shard_names(700)
    assert len(set(many)) == 700 and many == sorted(many) and many[0] == "shard-aaa"
