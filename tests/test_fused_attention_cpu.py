"""The fused attention kernels' source and launch code in Triton's interpreter, on any machine.

tests/test_gpu.py checks `fused.attention` on CUDA at the model's shapes; this runs the same
kernels and the same launcher through Triton's interpreter (TRITON_INTERPRET=1, set before the
kernels are first built) at tiny shapes, so CI catches a broken launch or mask on every path: a
chunk, a step split among programs and combined, and a step of many streams on either step
kernel (`attn_split_kernel` with STEP_TILE, or `attn_keys_kernel` with KEYS_TILE); and the RoPE/
cache kernel with a one-stream step's launch settings and with those of larger launches.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: F401  (a missing Triton must fail, not skip)

from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.engine.session import MAX_CHUNK_TOKENS
from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
from voxtral_desktop.model import layers
from voxtral_desktop.model.cache import KeyMask
from voxtral_desktop.model.encoder import _cache_dims
from voxtral_desktop.model.graph_step import ring_buckets

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _reference(q: torch.Tensor, kv: LayerKV, mask: KeyMask) -> torch.Tensor:
    enabled = fused.ENABLED
    fused.ENABLED = False
    try:
        return layers.attend(q.float(), LayerKV(*kv.dense(torch.float32)), mask)
    finally:
        fused.ENABLED = enabled


# Padding rows (past the query rows, up to the tile) see no key in some paths and divide 0 by 0;
# their output is never stored. The interpreter's numpy says so; the GPU does not.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize(
    ("B", "T", "H", "HKV", "path"),
    [
        (1, 1, 8, 2, "split"),  # one stream's step: keys split, then combined (SPLIT_STEP)
        (1, 1, 8, 2, "split_keys"),  # ... the slices on attn_keys_kernel (SPLIT_ON_KEYS)
        (1, 4, 4, 4, "split_keys"),  # ... an encoder's 4-frame step so
        (3, 2, 4, 4, "split"),  # a few streams' positions (> STEP_ROWS): SPLIT_TILE
        (6, 1, 8, 2, "rows"),  # many streams' step on attn_split_kernel
        (6, 1, 8, 2, "keys"),  # ... and on attn_keys_kernel
        (6, 2, 8, 2, "keys"),  # two positions a stream (8 rows per KV head)
        (5, 3, 4, 4, "keys"),  # one head per KV head, 3 positions (an encoder's last frames)
        (2, 12, 8, 2, "chunk"),  # 48 rows per KV head: blocks of query rows
    ],
)
def test_fused_attention_paths_match_torch(
    monkeypatch: pytest.MonkeyPatch, B: int, T: int, H: int, HKV: int, path: str, int8: bool
) -> None:
    """Each launch path against the torch attention (fp32), over a ring with empty slots, a
    sliding window that hides the oldest keys, and slots past the filled count holding NaN."""
    D, S, filled = 16, 300, 290  # 300 slots: one stream's keys split in 2 (blocks of 64, 2 each)
    # Many streams fill the GPU on their own when 4 programs do (no split); one stream splits.
    monkeypatch.setattr(fused, "_programs_to_fill", lambda device: 4 if path in ("rows", "keys") else 64)
    monkeypatch.setattr(fused, "KEYS_TILE", (16, 1, None) if path == "keys" else None)
    monkeypatch.setattr(fused, "SPLIT_ON_KEYS", (32, 4, None) if path == "split_keys" else None)
    g = torch.Generator().manual_seed(7)
    q = torch.randn(B, H, T, D, generator=g).to(DEVICE)
    k = torch.randn(B, HKV, S, D, generator=g).to(DEVICE)
    v = torch.randn(B, HKV, S, D, generator=g).to(DEVICE)
    k[:, :, filled:] = float("nan")
    v[:, :, filled:] = float("nan")
    if int8:
        (kq, ks), (vq, vs) = quantize_kv(k), quantize_kv(v)
        kv = LayerKV(kq, vq, ks, vs)
    else:
        kv = LayerKV(k, v)
    held = torch.arange(S, device=DEVICE)
    held[3:5] = -1
    window = 250
    positions = torch.arange(filled - T, filled, device=DEVICE)
    got = fused.attention(q, kv, positions, held, window, torch.tensor(filled, device=DEVICE))
    ring = LayerKV(*(t[:, :, :filled] for t in (kv.k, kv.v)), *(
        (None, None) if kv.k_scale is None else (kv.k_scale[:, :, :filled], kv.v_scale[:, :, :filled])
    ))  # fmt: skip
    want = _reference(q, ring, KeyMask(positions, held[:filled], window, H // HKV))
    assert got.shape == (B, H, T, D)
    torch.testing.assert_close(got.float(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("filled", [40, 290, 1100])
@pytest.mark.parametrize("on_keys", [False, True])
def test_a_step_split_for_the_whole_ring_reads_the_slices_in_use(
    monkeypatch: pytest.MonkeyPatch, filled: int, int8: bool, on_keys: bool
) -> None:
    """One stream's step over a ring of 1,100 slots is split among 9 programs a KV head (the
    step's graph is captured once for the whole ring), and the fill on the device decides how
    many hold keys: 2 at 40 slots, 5 at 290, 9 at 1,100. The others store nothing, and the
    combine reads only the slices in use, so the partial buffers' stale contents never count."""
    monkeypatch.setattr(fused, "SPLIT_STEP", ((32, 4, None), 64))
    monkeypatch.setattr(fused, "_programs_to_fill", lambda device: 64)
    monkeypatch.setattr(fused, "SPLIT_ON_KEYS", (32, 4, None) if on_keys else None)
    B, T, H, HKV, D, S = 1, 1, 8, 2, 16, 1100
    g = torch.Generator().manual_seed(5)
    q = torch.randn(B, H, T, D, generator=g).to(DEVICE)
    k, v = (torch.randn(B, HKV, S, D, generator=g).to(DEVICE) for _ in range(2))
    k[:, :, filled:] = float("nan")
    v[:, :, filled:] = float("nan")
    kv = LayerKV(k, v)
    if int8:
        (kq, ks), (vq, vs) = quantize_kv(k), quantize_kv(v)
        kv = LayerKV(kq, vq, ks, vs)
    held = torch.arange(S, device=DEVICE)
    held[filled:] = -1
    positions = torch.tensor([filled - 1], device=DEVICE)
    window = 1000
    empty = torch.empty

    def stale(*shape, **kw):  # the partial buffers hold NaN from an earlier replay, say
        return (
            empty(*shape, **kw).fill_(float("nan"))
            if kw.get("dtype") == torch.float32
            else empty(*shape, **kw)
        )

    monkeypatch.setattr(torch, "empty", stale)
    got = fused.attention(q, kv, positions, held, window, torch.tensor(filled, device=DEVICE))
    monkeypatch.setattr(torch, "empty", empty)
    ring = LayerKV(*(t[:, :, :filled] for t in (kv.k, kv.v)), *(
        (None, None) if kv.k_scale is None else (kv.k_scale[:, :, :filled], kv.v_scale[:, :, :filled])
    ))  # fmt: skip
    want = _reference(q, ring, KeyMask(positions, held[:filled], window, H // HKV))
    torch.testing.assert_close(got.float(), want, rtol=1e-4, atol=1e-4)


def test_one_stream_gets_a_graph_for_a_shallow_and_one_for_a_deep_step() -> None:
    """The decoder's ring of a live session (its window plus the prompt) gets two graphs, split
    8 and 32 ways; a batch of streams one; the encoder's ring, fixed by its window and largest
    chunk, stays within the first graph's slots."""
    config = ModelConfig()
    slots, _ = fused.SPLIT_STEP_DEEP
    decoder_ring = config.decoder.sliding_window + StreamConfig().n_prompt_tokens - 1  # DecoderState's
    assert ring_buckets(decoder_ring, 1) == [slots, decoder_ring]
    assert ring_buckets(decoder_ring, 4) == [decoder_ring]
    assert ring_buckets(slots, 1) == [slots]
    encoder_ring = _cache_dims(config.encoder, 1, MAX_CHUNK_TOKENS * config.downsample_factor)["capacity"]
    assert encoder_ring <= slots


def test_how_many_ways_a_step_splits_its_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU of 132 SMs (528 programs fill it): the decoder's one-position step 8 ways in its
    first graph and 32 in the whole ring's; the encoder's 4-frame step 16 ways over its ring, and
    never more than one slice per 32-key tile or than fill the GPU; several streams by SPLIT_MAX."""
    fill_decoder, fill_encoder = 528 // 8, -(-528 // 32)  # as `attention` rounds: up
    assert fused.split_count(1, 1, 1024, fill_decoder) == 8
    assert fused.split_count(1, 1, 8230, fill_decoder) == 32
    assert fused.split_count(1, 1, 200, fill_decoder) == 2  # at least 128 keys a slice
    assert fused.split_count(1, 4, 1005, fill_encoder) == 16
    assert fused.split_count(1, 4, 100, fill_encoder) == 4  # one 32-key tile a slice at least
    assert fused.split_count(1, 4, 1005, 4) == 4  # a small GPU
    assert fused.split_count(8, 1, 8230, -(-528 // 64)) == 9
    # the settings are read on every call (the bench scripts change them between captures)
    monkeypatch.setitem(fused.SPLIT_STEP_ROWS, 4, 8)
    assert fused.split_count(1, 4, 1005, fill_encoder) == 8
    monkeypatch.setattr(fused, "SPLIT_STEP_DEEP", (8230, 32))
    assert fused.split_count(1, 1, 8230, fill_decoder) == 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("log2", "full"), [(False, False), (True, True)])
@pytest.mark.parametrize("half_tile", [False, True])
def test_chunk_over_a_wrapped_ring(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, log2: bool, full: bool, half_tile: bool
) -> None:
    """An encoder-style chunk over a ring that has wrapped (slot = position % S), so blocks of keys
    hold new and old positions side by side; with and without the log2 scores and the unmasked
    blocks every row sees whole (`fused.CHUNK_LOG2`, `fused.CHUNK_FULL`). Log2 applies to fp16
    and bf16 (the interpreter has no bf16). `half_tile`: the folder's tile for keys in half
    precision, 128 query rows by 64 keys (`fused.CHUNK_TILES_HALF`), which fp32 does not take."""
    monkeypatch.setattr(fused, "CHUNK_LOG2", log2)
    monkeypatch.setattr(fused, "CHUNK_FULL", full)
    monkeypatch.setattr(fused, "CHUNK_TILES_HALF", {16: (128, 64, 4, None)} if half_tile else {})
    B, H, T, D, window = 2, 2, 24, 16, 150
    S = window + T - 1 + 10  # 183 slots: 3 blocks of 64 keys, the last one short
    first = 500  # the ring has wrapped twice
    g = torch.Generator().manual_seed(11)
    q = torch.randn(B, H, T, D, generator=g).to(DEVICE, dtype)
    k, v = (torch.randn(B, H, S, D, generator=g).to(DEVICE, dtype) for _ in range(2))
    held_pos = torch.arange(first + T - S, first + T, device=DEVICE)
    held = torch.empty(S, dtype=torch.long, device=DEVICE)
    held[held_pos % S] = held_pos
    positions = torch.arange(first, first + T, device=DEVICE)
    got = fused.attention(q, LayerKV(k, v), positions, held, window)
    want = _reference(q, LayerKV(k, v), KeyMask(positions, held, window))
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.float(), want, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    ("B", "T", "H", "HKV", "D", "step"),
    [
        (1, 1, 8, 2, 128, None),  # a one-stream decoder step (fused.ROPE_STEP)
        (1, 4, 8, 8, 64, None),  # a one-stream encoder step
        (1, 4, 8, 8, 64, (2048, 4)),  # ... 2 positions a program
        (1, 3, 8, 8, 64, (2048, 4)),  # the encoder's last frames: a half-filled block of positions
        (2, 6, 4, 2, 64, None),  # larger launches: ROPE_ELEMENTS / ROPE_WARPS
    ],
)
def test_rope_to_cache_matches_torch(
    monkeypatch: pytest.MonkeyPatch, B: int, T: int, H: int, HKV: int, D: int, step: tuple[int, int] | None
) -> None:
    """q rotated into [B, H, T, D], k rotated and v as it is into their cache slots (the rest of
    the ring untouched), against `apply_rope` in fp32. `step`: a one-stream step's (elements,
    warps) other than the app's (fused.ROPE_STEP), so that blocks of several positions are run."""
    from voxtral_desktop.kernels.positions import rope_tables
    from voxtral_desktop.model.layers import apply_rope

    if step is not None:
        monkeypatch.setattr(fused, "ROPE_STEP", step)

    C = 16
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(B, T, (H + 2 * HKV) * D, generator=g).to(DEVICE)
    positions = torch.arange(T, device=DEVICE) + 9
    rot = rope_tables(positions, D, 1e6)
    slots = positions % C
    kc = torch.zeros(B, HKV, C, D, device=DEVICE)
    vc = torch.zeros_like(kc)
    q = fused.rope_qkv_to_cache(qkv, rot, slots, LayerKV(kc, vc), H, HKV, D)
    q_ref, k_ref = apply_rope(qkv[..., : (H + HKV) * D].reshape(B, T, H + HKV, D), rot).split([H, HKV], dim=2)
    torch.testing.assert_close(q, q_ref.transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kc[:, :, slots], k_ref.transpose(1, 2), rtol=1e-5, atol=1e-5)
    v_ref = qkv[..., (H + HKV) * D :].reshape(B, T, HKV, D).transpose(1, 2)
    assert torch.equal(vc[:, :, slots], v_ref)
    untouched = torch.ones(C, dtype=torch.bool, device=DEVICE)
    untouched[slots] = False
    assert not kc[:, :, untouched].any() and not vc[:, :, untouched].any()
