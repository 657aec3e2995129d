"""The project's fused attention against PyTorch's FlexAttention at a folder batch's shapes (device).

    python bench/ab_flex_attention.py

The folder batch spends about 3 s of its 8.5 s in attention (bench/RESULTS.md, eighth and ninth
sessions): the encoder chunks (64 streams x 128 frames, 32 heads of 64, an 877-slot int8 ring) at
~124 TFLOP/s, and the decoder steps (256 streams, 32 query heads on 8 KV heads of 128, int8) at
2.5-2.7 TB/s. This script asks whether `torch.nn.attention.flex_attention` (compiled Triton
flash attention with block sparsity) beats them, timing each call back to back with CUDA events
(flex cannot be captured with its block mask made per call):
- an encoder chunk: `fused.attention` on the int8 ring and on a bf16 copy; flex on the bf16 ring
  with the ring's visibility as a mask, with and without making the block mask; SDPA (flash, no
  mask) on the same keys as a ceiling;
- the whole file layer by layer (16 files x 3,000 frames, causal window of 750): flex only;
- a decoder step at 400 and 780 of 800 slots: `fused.attention` int8 and bf16, flex bf16 (GQA).
Prints microseconds a call, the rate, and each output's relative difference from fp32 attention.
"""

from __future__ import annotations

import sys

import torch
from torch.nn import functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv

dev = torch.device("cuda")
flex = torch.compile(flex_attention, dynamic=False)
WINDOW = 750


def timed_us(fn, calls: int = 30) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) * 1e3 / calls)
    return best


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).norm() / want.norm()).item()


def reference(q, k, v, visible) -> torch.Tensor:
    """fp32 attention of q [B, H, T, D] over k/v [B, Hkv, S, D] with a [T, S] visibility."""
    g = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)
    scores = q.float() @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    return torch.softmax(scores.masked_fill(~visible, float("-inf")), -1) @ v


def report(name: str, us: float, rate: float, unit: str, err: float | None = None) -> None:
    diff = "" if err is None else f"  rel. diff {err:.2e}"
    print(f"{name:58s} {us:9.1f} us  {rate:7.1f} {unit}{diff}", flush=True)


def encoder_chunk() -> None:
    B, H, T, D = 64, 32, 128, 64
    S = WINDOW + T - 1
    first = 2000  # the chunk's first position; the ring holds positions first - 749 .. first + 127
    pos = torch.arange(first, first + T, device=dev)
    held_pos = torch.arange(first + T - S, first + T, device=dev)
    held = torch.empty(S, dtype=torch.long, device=dev)
    held[held_pos % S] = held_pos  # ring order, as the cache keeps it
    q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
    (k8, ks), (v8, vs) = (quantize_kv(torch.randn(B, H, S, D, device=dev)) for _ in range(2))
    kv8 = LayerKV(k8, v8, ks, vs)
    k16, v16 = kv8.dense(torch.bfloat16)
    kv16 = LayerKV(k16, v16)
    distance = pos[:, None] - held[None, :]
    visible = (held >= 0)[None, :] & (distance >= 0) & (distance < WINDOW)
    flops = 4 * B * H * int(visible.sum()) * D
    want = torch.cat(
        [reference(q[i : i + 8], k16[i : i + 8], v16[i : i + 8], visible) for i in range(0, B, 8)]
    )

    def ring_mask(b, h, qi, ki):
        d = pos[qi] - held[ki]
        return (held[ki] >= 0) & (d >= 0) & (d < WINDOW)

    def block_mask():
        return create_block_mask(ring_mask, None, None, T, S, device=dev, _compile=True)

    print(f"encoder chunk: {B} streams x {T} frames, {H} heads of {D}, ring of {S} slots", flush=True)
    for name, kv in (("fused.attention, int8 ring", kv8), ("fused.attention, bf16 ring", kv16)):
        out = fused.attention(q, kv, pos, held, WINDOW)
        us = timed_us(lambda kv=kv: fused.attention(q, kv, pos, held, WINDOW))
        report(name, us, flops / us / 1e6, "TFLOP/s", rel(out, want))
    bm = block_mask()
    out = flex(q, k16, v16, block_mask=bm)
    us = timed_us(lambda: flex(q, k16, v16, block_mask=bm))
    report("flex, bf16 ring, block mask made once", us, flops / us / 1e6, "TFLOP/s", rel(out, want))
    us = timed_us(lambda: flex(q, k16, v16, block_mask=block_mask()))
    report("flex, bf16 ring, block mask made per call", us, flops / us / 1e6, "TFLOP/s")
    us = timed_us(lambda: F.scaled_dot_product_attention(q, k16, v16))
    report("SDPA, every slot visible (ceiling; counted as visible)", us, flops / us / 1e6, "TFLOP/s")


def whole_file() -> None:
    B, H, T, D = 16, 32, 3000, 64
    q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16) for _ in range(3))

    def sliding(b, h, qi, ki):
        return (qi >= ki) & (qi - ki < WINDOW)

    bm = create_block_mask(sliding, None, None, T, T, device=dev, _compile=True)
    idx = torch.arange(T, device=dev)
    visible = (idx[:, None] >= idx[None, :]) & (idx[:, None] - idx[None, :] < WINDOW)
    flops = 4 * B * H * int(visible.sum()) * D
    out = flex(q, k, v, block_mask=bm)
    want = reference(q[:1], k[:1], v[:1], visible)
    us = timed_us(lambda: flex(q, k, v, block_mask=bm), calls=10)
    print(f"whole file: {B} files x {T} frames, causal window {WINDOW}", flush=True)
    report("flex, one layer over whole files", us, flops / us / 1e6, "TFLOP/s", rel(out[:1], want))
    for bq, bk in ((128, 64), (64, 128), (128, 128)):
        try:
            opts = {"BLOCK_M": bq, "BLOCK_N": bk}
            fn = lambda opts=opts: flex(q, k, v, block_mask=bm, kernel_options=opts)  # noqa: E731
            us = timed_us(fn, calls=10)
            report(f"  kernel_options {opts}", us, flops / us / 1e6, "TFLOP/s")
        except Exception as e:
            print(f"  kernel_options {bq}x{bk}: {type(e).__name__}: {str(e)[:100]}", flush=True)


def decoder_step(filled: int) -> None:
    B, H, Hkv, D, S = 256, 32, 8, 128, 800
    q = torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16)
    (k8, ks), (v8, vs) = (quantize_kv(torch.randn(B, Hkv, S, D, device=dev)) for _ in range(2))
    kv8 = LayerKV(k8, v8, ks, vs)
    k16, v16 = kv8.dense(torch.bfloat16)
    kv16 = LayerKV(k16, v16)
    held = torch.full((S,), -1, dtype=torch.long, device=dev)
    held[:filled] = torch.arange(filled, device=dev)
    pos = torch.tensor([filled - 1], device=dev)
    valid = torch.tensor(filled, device=dev)
    visible = (held >= 0)[None, :]
    want = reference(q[:16], k16[:16], v16[:16], visible)
    read8 = B * Hkv * filled * (2 * D + 8)
    print(f"decoder step: {B} streams, {H} heads on {Hkv} KV heads of {D}, {filled} of {S} slots", flush=True)
    for name, kv, bytes_ in (
        ("fused.attention, int8", kv8, read8),
        ("fused.attention, bf16", kv16, 2 * read8),
    ):
        out = fused.attention(q, kv, pos, held, 10**9, valid)
        us = timed_us(lambda kv=kv: fused.attention(q, kv, pos, held, 10**9, valid))
        report(name, us, bytes_ / us / 1e6, "TB/s", rel(out[:16], want))

    def used(b, h, qi, ki):
        return ki < valid

    bm = create_block_mask(used, None, None, 1, S, device=dev, _compile=True)
    out = flex(q, k16, v16, block_mask=bm, enable_gqa=True)
    us = timed_us(lambda: flex(q, k16, v16, block_mask=bm, enable_gqa=True))
    report("flex, bf16, GQA", us, 2 * read8 / us / 1e6, "TB/s", rel(out[:16], want))


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    for part in (encoder_chunk, whole_file, lambda: decoder_step(400), lambda: decoder_step(780)):
        try:
            part()
        except Exception as e:
            print(f"failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr, flush=True)
        torch.cuda.empty_cache()
