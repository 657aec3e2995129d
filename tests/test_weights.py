"""Reading checkpoints: format detection, GGUF/shard/seed readers, and every corrupt-input path."""

from __future__ import annotations

import base64
import functools
import json
import os
import struct
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import quantize

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.errors import ModelFileError, TokenizerError, VoxtralError
from voxtral_desktop.kernels.q4 import Q4Weight
from voxtral_desktop.synthetic.model import random_tensors, tiny_config, write_native_model
from voxtral_desktop.weights.checkpoint import Checkpoint, open_checkpoint
from voxtral_desktop.weights.convert import convert_native_to_gguf
from voxtral_desktop.weights.gguf_file import read_gguf
from voxtral_desktop.weights.names import TOK_EMBEDDINGS as TOK
from voxtral_desktop.weights.names import TensorKind, expected_tensors
from voxtral_desktop.weights.shards import ConcatenatedFile, list_shards
from voxtral_desktop.weights.voxtral_gguf import infer_config

MAX_ERROR_ALLOC = 8 << 20  # a corrupt file must fail before any big allocation


def placeholder_tekken() -> bytes:
    """A minimal tekken.json-shaped file (256 single-byte tokens); only its bytes matter here."""
    vocab = [
        {"rank": i, "token_bytes": base64.b64encode(bytes([i])).decode(), "token_str": None}
        for i in range(256)
    ]
    config = {
        "pattern": ".",
        "num_vocab_tokens": 256,
        "default_vocab_size": 1256,
        "default_num_special_tokens": 1000,
    }
    doc = {"config": config, "vocab": vocab, "special_tokens": [], "note": "placeholder – not a tokenizer ✓"}
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


# Real head dims (64 / 128) so that a key-less seed GGUF infers back exactly this config.
SEED_CONFIG = tiny_config(
    encoder_n_heads=2, encoder_head_dim=64, decoder_n_heads=2, decoder_n_kv_heads=1, decoder_head_dim=128
)


def write_seed_gguf(
    path: Path,
    config: ModelConfig,
    tensors: dict[str, torch.Tensor],
    *,
    drop: tuple[str, ...] = (),
    types: dict[str, GGMLQuantizationType] | None = None,
    reshape: dict[str, tuple[int, ...]] | None = None,
) -> Path:
    """The seed's layout, written by gguf-py (an independent writer): no metadata, Q4_0 matmuls."""
    writer = gguf.GGUFWriter(str(path), arch="unused")
    writer.kv_data = [{}]  # the published file has no metadata keys at all
    for spec in expected_tensors(config):
        if spec.name in drop:
            continue
        arr = tensors[spec.name].float().numpy()
        if reshape and spec.name in reshape:
            arr = np.resize(arr, reshape[spec.name])
        qtype = (types or {}).get(
            spec.name, GGMLQuantizationType.Q4_0 if spec.quantizable else GGMLQuantizationType.F16
        )
        if qtype == GGMLQuantizationType.F16:
            writer.add_tensor(spec.name, arr.astype(np.float16))
        elif qtype == GGMLQuantizationType.F32:
            writer.add_tensor(spec.name, arr)
        else:
            writer.add_tensor(spec.name, quantize(arr, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def split_file(path: Path, out_dir: Path, size: int) -> list[Path]:
    """What `split -b SIZE FILE shard-` does."""
    data = path.read_bytes()
    out_dir.mkdir()
    names = [
        f"shard-{chr(97 + i // 26 // 26)}{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}" for i in range(0, 17576)
    ]
    paths = []
    for i, start in enumerate(range(0, len(data), size)):
        p = out_dir / names[i]
        p.write_bytes(data[start : start + size])
        paths.append(p)
    return paths


def expect_error(
    fn: Callable[[], object], exc_type: type[VoxtralError] = ModelFileError, match: str = ""
) -> str:
    """`fn` raises `exc_type` with a one-line message, without allocating much on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(exc_type) as info:
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message and "\n" not in message, repr(message)
    assert match in message, message
    assert peak < MAX_ERROR_ALLOC, f"allocated {peak} bytes before failing"
    return message


def dense(w: torch.Tensor | Q4Weight) -> torch.Tensor:
    assert isinstance(w, torch.Tensor)
    return w


def weight_bytes(w: torch.Tensor | Q4Weight) -> torch.Tensor:
    return w.blocks if isinstance(w, Q4Weight) else w


def assert_same_tensors(a: Checkpoint, b: Checkpoint) -> None:
    assert list(a.tensors) == list(b.tensors)
    for name, wa in a.tensors.items():
        wb = b.tensors[name]
        assert type(wa) is type(wb), name
        ta, tb = weight_bytes(wa), weight_bytes(wb)
        assert ta.dtype == tb.dtype and torch.equal(ta, tb), name


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> ModelConfig:
    return tiny_config()


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory: pytest.TempPathFactory, tiny: ModelConfig) -> Path:
    out = tmp_path_factory.mktemp("native") / "tiny-model"
    return write_native_model(out, tiny, random_tensors(tiny, seed=1), placeholder_tekken())


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory, native_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    convert_native_to_gguf(native_dir, out)
    return out


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("seed")
    return write_seed_gguf(d / "voxtral-q4.gguf", SEED_CONFIG, random_tensors(SEED_CONFIG, seed=2))


# ---- native ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_native_directory(tmp_path: Path, tiny: ModelConfig, dtype: torch.dtype) -> None:
    tensors = random_tensors(tiny, seed=3, dtype=dtype)
    src = write_native_model(tmp_path / "m", tiny, tensors, placeholder_tekken())
    ckpt = open_checkpoint(src)
    assert ckpt.config == tiny
    assert ckpt.tekken_json == placeholder_tekken()
    assert "Mistral-native" in ckpt.description
    assert list(ckpt.tensors) == [s.name for s in expected_tensors(tiny)]
    for name, t in ckpt.tensors.items():
        assert isinstance(t, torch.Tensor) and t.dtype == dtype and torch.equal(t, tensors[name])


def test_native_tokenizer_override_and_missing(tmp_path: Path, tiny: ModelConfig) -> None:
    src = write_native_model(tmp_path / "m", tiny, random_tensors(tiny, seed=3), placeholder_tekken())
    other = tmp_path / "other-tekken.json"
    other.write_bytes(placeholder_tekken().replace(b"placeholder", b"other"))
    assert open_checkpoint(src, tokenizer_path=other).tekken_json == other.read_bytes()
    (src / "tekken.json").unlink()
    expect_error(lambda: open_checkpoint(src), TokenizerError, "--tokenizer")
    expect_error(lambda: open_checkpoint(src, tmp_path / "nope.json"), TokenizerError, "no such tokenizer")
    (src / "tekken.json").write_bytes(b"not json")
    expect_error(lambda: open_checkpoint(src), TokenizerError, "tekken.json")


def _native_variant(
    tmp_path: Path, tiny: ModelConfig, edit: Callable[[dict[str, torch.Tensor]], None]
) -> Path:
    tensors = random_tensors(tiny, seed=4)
    edit(tensors)
    return write_native_model(tmp_path / "m", tiny, tensors, placeholder_tekken())


def test_native_missing_tensor(tmp_path: Path, tiny: ModelConfig) -> None:
    src = _native_variant(tmp_path, tiny, lambda t: t.__delitem__("layers.1.ffn_norm.weight"))
    expect_error(lambda: open_checkpoint(src), match="missing tensor layers.1.ffn_norm.weight")


def test_native_wrong_shape(tmp_path: Path, tiny: ModelConfig) -> None:
    def edit(t: dict[str, torch.Tensor]) -> None:
        t["layers.0.attention.wk.weight"] = torch.zeros(32, 64, dtype=torch.bfloat16)

    src = _native_variant(tmp_path, tiny, edit)
    msg = expect_error(lambda: open_checkpoint(src), match="layers.0.attention.wk.weight")
    assert "(32, 64)" in msg and "(64, 64)" in msg


def test_native_extra_and_bad_dtype(tmp_path: Path, tiny: ModelConfig) -> None:
    src = _native_variant(tmp_path, tiny, lambda t: t.__setitem__("output.weight", torch.zeros(4, 4)))
    expect_error(lambda: open_checkpoint(src), match="unexpected tensor output.weight")

    def edit(t: dict[str, torch.Tensor]) -> None:
        t["norm.weight"] = torch.zeros(64, dtype=torch.int8)

    src = _native_variant(tmp_path / "b", tiny, edit)
    expect_error(lambda: open_checkpoint(src), match="norm.weight is stored as I8")


def test_native_bad_params(tmp_path: Path, tiny: ModelConfig) -> None:
    src = write_native_model(tmp_path / "m", tiny, random_tensors(tiny, seed=5), placeholder_tekken())
    (src / "params.json").write_text("{not json")
    expect_error(lambda: open_checkpoint(src), match="params.json is not valid JSON")
    (src / "params.json").write_text(json.dumps({"dim": 64}))
    expect_error(lambda: open_checkpoint(src), match="params.json")
    (src / "params.json").write_text("[1, 2]")
    expect_error(lambda: open_checkpoint(src), match="not a Voxtral Realtime config")
    params = tiny.to_params()
    params["n_kv_heads"] = 3  # 4 heads are not a multiple of 3 kv heads
    (src / "params.json").write_text(json.dumps(params))
    expect_error(lambda: open_checkpoint(src), match="n_kv_heads")


def test_native_truncated_safetensors(tmp_path: Path, tiny: ModelConfig) -> None:
    src = write_native_model(tmp_path / "m", tiny, random_tensors(tiny, seed=6), placeholder_tekken())
    st = src / "consolidated.safetensors"
    data = st.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        st.write_bytes(data[:cut])
        expect_error(lambda: open_checkpoint(src), match="not a valid safetensors file")


# ---- our GGUF ----------------------------------------------------------------------------------


def test_gguf_roundtrip(gguf_file: Path, native_dir: Path, tiny: ModelConfig) -> None:
    ckpt = open_checkpoint(gguf_file)
    assert ckpt.config == tiny
    assert ckpt.tekken_json == placeholder_tekken()
    assert ckpt.description.startswith("Q4_0 GGUF (voxtral-desktop)")
    source = random_tensors(tiny, seed=1)
    for spec in expected_tensors(tiny):
        w = ckpt.tensors[spec.name]
        if spec.quantizable:
            assert isinstance(w, Q4Weight) and w.shape == spec.shape
            want = quantize(source[spec.name].float().numpy(), GGMLQuantizationType.Q4_0)
            assert np.array_equal(w.blocks.numpy(), want), spec.name
        else:
            assert torch.equal(dense(w), source[spec.name].float()), spec.name


def test_gguf_tensors_are_writable_views_without_warnings(gguf_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy on a read-only map would warn
        ckpt = open_checkpoint(gguf_file)
    w = ckpt.tensors["layers.0.attention.wq.weight"]
    assert isinstance(w, Q4Weight)
    before = gguf_file.read_bytes()
    w.blocks[0, 0] ^= 0xFF  # copy-on-write: a private page, the file is untouched
    assert gguf_file.read_bytes() == before


def test_tokenizer_path_overrides_embedded(gguf_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "t.json"
    other.write_bytes(placeholder_tekken().replace(b"placeholder", b"override"))
    assert open_checkpoint(gguf_file, tokenizer_path=other).tekken_json == other.read_bytes()


@pytest.mark.parametrize("size", [997, 4096, 50_000, 10**7])
def test_gguf_shards_read_like_the_file(gguf_file: Path, tmp_path: Path, size: int) -> None:
    shards = split_file(gguf_file, tmp_path / "shards", size)
    (tmp_path / "shards" / "tekken.json").write_bytes(b"{}")  # not a shard: JSON files are skipped
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*"))
    ckpt = open_checkpoint(tmp_path / "shards")
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*")) == before  # nothing joined
    assert (f"{len(shards)} shards" in ckpt.description) == (len(shards) > 1)
    assert_same_tensors(ckpt, open_checkpoint(gguf_file))
    assert ckpt.config == open_checkpoint(gguf_file).config


def test_concatenated_file_views_and_copies(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8)
    for i, (a, b) in enumerate([(0, 3000), (3000, 3000), (3000, 7000), (7000, 10_000)]):
        (tmp_path / f"chunk_{i * 5}").write_bytes(data[a:b].tobytes())  # chunk_5 is empty
    paths = list_shards(tmp_path)
    assert [p.name for p in paths] == ["chunk_0", "chunk_5", "chunk_10", "chunk_15"]  # natural order
    cf = ConcatenatedFile(paths)
    assert cf.size == 10_000
    view = cf.array(3500, 100)
    assert cf.is_view(3500, 100) and isinstance(view, np.memmap)
    assert np.array_equal(view, data[3500:3600])
    straddle = cf.array(2990, 4020)
    assert not cf.is_view(2990, 4020) and not isinstance(straddle, np.memmap)
    assert np.array_equal(straddle, data[2990:7010])
    assert cf.read(9998, 2) == data[9998:].tobytes()
    with pytest.raises(ValueError):
        cf.array(9999, 2)


def test_straddling_float_tensor_is_aligned(gguf_file: Path, tmp_path: Path) -> None:
    # 1001-byte shards put most tensors at odd offsets inside a shard: those are copied, not viewed.
    split_file(gguf_file, tmp_path / "s", 1001)
    ckpt = open_checkpoint(tmp_path / "s")
    norm = ckpt.tensors["norm.weight"]
    assert isinstance(norm, torch.Tensor) and norm.data_ptr() % 4 == 0
    assert torch.equal(norm, dense(open_checkpoint(gguf_file).tensors["norm.weight"]))


# ---- the seed's key-less GGUF -----------------------------------------------------------------


def test_seed_layout_needs_a_tokenizer(seed_file: Path, tmp_path: Path) -> None:
    assert read_gguf([seed_file]).metadata == {}
    expect_error(lambda: open_checkpoint(seed_file), TokenizerError, "--tokenizer tekken.json")
    tok = tmp_path / "tekken.json"
    tok.write_bytes(placeholder_tekken())
    ckpt = open_checkpoint(seed_file, tokenizer_path=tok)
    assert ckpt.config == SEED_CONFIG
    assert ckpt.tekken_json == placeholder_tekken()
    assert "seed layout" in ckpt.description


def test_seed_layout_detected_and_inferred(seed_file: Path, tmp_path: Path) -> None:
    (seed_file.parent / "tekken.json").write_bytes(placeholder_tekken())
    try:
        ckpt = open_checkpoint(seed_file)
    finally:
        (seed_file.parent / "tekken.json").unlink()
    assert ckpt.config == SEED_CONFIG
    source = random_tensors(SEED_CONFIG, seed=2)
    for spec in expected_tensors(SEED_CONFIG):
        w = ckpt.tensors[spec.name]
        if spec.quantizable:
            want = quantize(source[spec.name].float().numpy(), GGMLQuantizationType.Q4_0)
            assert isinstance(w, Q4Weight) and np.array_equal(w.blocks.numpy(), want)
        else:  # F16 stays F16
            assert dense(w).dtype == torch.float16 and torch.equal(dense(w), source[spec.name].half())

    shard_dir = tmp_path / "web"
    split_file(seed_file, shard_dir, 3000)
    (shard_dir / "tekken.json").write_bytes(placeholder_tekken())
    assert_same_tensors(open_checkpoint(shard_dir), ckpt)


def test_float_types_in_gguf(tmp_path: Path) -> None:
    """BF16/F32 come back as torch tensors of that dtype; matmul weights may be float too."""
    bf16 = GGMLQuantizationType.BF16
    types = {"norm.weight": bf16, "layers.0.attention.wq.weight": bf16, TOK: GGMLQuantizationType.F32}
    tensors = random_tensors(SEED_CONFIG, seed=2)
    p = write_seed_gguf(tmp_path / "f.gguf", SEED_CONFIG, tensors, types=types)
    (tmp_path / "tekken.json").write_bytes(placeholder_tekken())
    ckpt = open_checkpoint(p)
    for name, dtype in (("norm.weight", torch.bfloat16), ("layers.0.attention.wq.weight", torch.bfloat16)):
        assert dense(ckpt.tensors[name]).dtype == dtype and torch.equal(
            dense(ckpt.tensors[name]), tensors[name]
        )
    assert torch.equal(dense(ckpt.tensors[TOK]), tensors[TOK].float())


def test_directory_with_one_gguf_and_stray_shards(gguf_file: Path, tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (d / "voxtral.gguf").write_bytes(gguf_file.read_bytes())
    assert open_checkpoint(d).config == open_checkpoint(gguf_file).config  # a one-piece "split"
    shards = split_file(gguf_file, tmp_path / "s", 50_000)
    (tmp_path / "s" / "zz-notes.txt").write_text("not a shard " * 10)
    expect_error(lambda: open_checkpoint(tmp_path / "s"), match="not one of the shards")
    shards[1].unlink()  # a missing piece in the middle
    (tmp_path / "s" / "zz-notes.txt").unlink()
    expect_error(lambda: open_checkpoint(tmp_path / "s"))


def test_seed_inference_head_dims(tmp_path: Path) -> None:
    # The tiny test config has head_dim 16/32: its widths are not multiples of 64/128.
    cfg = tiny_config()
    shapes = {s.name: s.shape for s in expected_tensors(cfg)}
    expect_error(lambda: infer_config(shapes, "x.gguf"), match="head count")
    real = ModelConfig()
    assert infer_config({s.name: s.shape for s in expected_tensors(real)}, "real") == real


def test_seed_layout_missing_wrong_shape_wrong_type(tmp_path: Path) -> None:
    cfg, tensors = SEED_CONFIG, random_tensors(SEED_CONFIG, seed=2)
    p = write_seed_gguf(tmp_path / "a.gguf", cfg, tensors, drop=("layers.1.attention.wv.weight",))
    expect_error(lambda: open_checkpoint(p), match="missing tensor layers.1.attention.wv.weight")
    p = write_seed_gguf(
        tmp_path / "b.gguf", cfg, tensors, reshape={"layers.0.feed_forward.w2.weight": (64, 96)}
    )
    msg = expect_error(lambda: open_checkpoint(p), match="layers.0.feed_forward.w2.weight has shape (64, 96)")
    assert "expected (64, 128)" in msg
    p = write_seed_gguf(tmp_path / "c.gguf", cfg, tensors, types={"norm.weight": GGMLQuantizationType.Q8_0})
    expect_error(lambda: open_checkpoint(p), match="norm.weight is stored as Q8_0")


def test_foreign_gguf_is_not_a_voxtral_model(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), arch="llama")
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    expect_error(lambda: open_checkpoint(tmp_path / "llama.gguf"), match="not a Voxtral Realtime model")


# ---- corrupt GGUF bytes ------------------------------------------------------------------------


def _info_positions(data: bytes, name: str) -> tuple[int, int]:
    """(position of the ggml type field, position of the offset field) of tensor `name`."""
    raw = name.encode()
    pos = data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)
    n_dims = struct.unpack_from("<I", data, pos)[0]
    type_pos = pos + 4 + 8 * n_dims
    return type_pos, type_pos + 4


def _corrupt(tmp_path: Path, data: bytes | bytearray) -> Path:
    p = tmp_path / "bad.gguf"
    p.write_bytes(bytes(data))
    return p


def test_gguf_bad_magic_and_version(gguf_file: Path, tmp_path: Path) -> None:
    data = bytearray(gguf_file.read_bytes())
    # Not starting with GGUF at all: not detected as GGUF.
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, b"GGUX" + data[4:])), match="not a Voxtral model")
    bad = bytearray(data)
    struct.pack_into("<I", bad, 4, 7)
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, bad)), match="unsupported GGUF version 7")
    struct.pack_into(">I", bad, 4, 3)
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, bad)), match="big-endian")


def test_gguf_truncated_everywhere(gguf_file: Path, tmp_path: Path) -> None:
    data = gguf_file.read_bytes()
    header_end = read_gguf([gguf_file]).data_offset
    cuts = [
        2,
        10,
        20,
        24 + 30,
        header_end // 2,
        header_end - 40,
        header_end + 100,
        len(data) - 1000,
        len(data) - 1,
    ]
    for cut in cuts:
        p = _corrupt(tmp_path, data[:cut])
        expect_error(functools.partial(open_checkpoint, p))
    p = _corrupt(tmp_path, b"")
    expect_error(lambda: open_checkpoint(p), match="empty")


def test_gguf_absurd_counts_and_lengths(gguf_file: Path, tmp_path: Path) -> None:
    data = gguf_file.read_bytes()
    for field_pos in (8, 16):  # n_tensors, n_kv
        bad = bytearray(data)
        struct.pack_into("<Q", bad, field_pos, 2**60)
        expect_error(functools.partial(open_checkpoint, _corrupt(tmp_path, bad)), match="more than a")
    bad = bytearray(data)
    struct.pack_into("<Q", bad, 24, 2**62)  # length of the first metadata key
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, bad)), match="past the end of the file")


def test_gguf_bad_tensor_infos(gguf_file: Path, tmp_path: Path) -> None:
    data = gguf_file.read_bytes()
    type_pos, offset_pos = _info_positions(data, "norm.weight")
    cases = [
        (offset_pos, "<Q", 2**63, "truncated download"),
        (offset_pos, "<Q", len(data) - 32, "truncated download"),
        (offset_pos, "<Q", 33, "not aligned"),
        (offset_pos, "<Q", 0, "overlap"),
        (type_pos, "<I", 1234, "unknown ggml type 1234"),
    ]
    for pos, fmt, value, match in cases:
        bad = bytearray(data)
        struct.pack_into(fmt, bad, pos, value)
        expect_error(functools.partial(open_checkpoint, _corrupt(tmp_path, bad)), match=match)
    # A tensor renamed to its neighbour's name (same length): duplicate.
    dup = data.replace(b"layers.0.attention.wq.weight", b"layers.0.attention.wk.weight", 1)
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, dup)), match="duplicate tensor")
    # Dimensions whose product is absurd.
    bad = bytearray(data)
    raw = b"norm.weight"
    dim_pos = data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw) + 4
    struct.pack_into("<Q", bad, dim_pos, 2**41)
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, bad)), match="absurd shape")


def test_gguf_metadata_problems(gguf_file: Path, tmp_path: Path) -> None:
    data = gguf_file.read_bytes()
    key = b"voxtral.format_version"
    pos = data.index(key) + len(key) + 4  # past the key and the value type: the u32 value
    bad = bytearray(data)
    struct.pack_into("<I", bad, pos, 9)
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, bad)), match="newer voxtral-desktop")
    odd = data.replace(b'"n_kv_heads":2', b'"n_kv_heads":3', 1)
    expect_error(lambda: open_checkpoint(_corrupt(tmp_path, odd)), match="n_kv_heads")


# ---- not a model at all ------------------------------------------------------------------------


def test_paths_that_are_not_models(tmp_path: Path) -> None:
    expect_error(lambda: open_checkpoint(tmp_path / "missing.gguf"), match="no such file or directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(lambda: open_checkpoint(empty), match="is not a Voxtral model: expected params.json")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "README.md").write_text("hello")
    expect_error(lambda: open_checkpoint(junk), match="is not a Voxtral model")
    text = tmp_path / "model.gguf"
    text.write_bytes(os.urandom(1000))
    expect_error(lambda: open_checkpoint(text), match="is not a Voxtral model")


def test_random_tensors_deterministic(tiny: ModelConfig) -> None:
    a, b = random_tensors(tiny, seed=7), random_tensors(tiny, seed=7)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["norm.weight"], random_tensors(tiny, seed=8)["norm.weight"])
    f32 = random_tensors(tiny, seed=7, dtype=torch.float32)
    assert torch.equal(f32["norm.weight"].bfloat16(), a["norm.weight"])
    for spec in expected_tensors(tiny):
        t = f32[spec.name].float()
        if spec.kind is TensorKind.VECTOR and spec.name.endswith("norm.weight"):
            assert abs(t.mean().item() - 1.0) < 0.1
        elif spec.kind is not TensorKind.VECTOR and t.numel() > 1000:
            assert 0.4 < t.std().item() < 0.6


def test_tiny_config_overrides() -> None:
    cfg = tiny_config(decoder_vocab_size=1500, encoder_sliding_window=16, decoder_n_layers=1)
    assert (cfg.decoder.vocab_size, cfg.encoder.sliding_window, cfg.decoder.n_layers) == (1500, 16, 1)
    with pytest.raises(TypeError):
        tiny_config(encoder_bogus=1)
    for spec in expected_tensors(tiny_config()):
        if spec.quantizable:
            assert spec.shape[1] % 32 == 0, spec
