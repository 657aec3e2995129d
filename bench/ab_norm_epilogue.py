"""The RMS norms between the step's matmuls as kernels, or in the matmuls' epilogues (device).

    python bench/ab_norm_epilogue.py [--replays 200]

Chains of the step's matmuls at the full model's shapes, with random Q4 weights, each captured in
a CUDA graph with programmatic dependent launch and replayed back to back (median of 5 x
`--replays`; `mma_linear_to_norm` and `NormedRows`, kernels/norm_link.py), the norms:
- as kernels: wqkv -> (a copy of q's columns, standing in for RoPE and attention) -> wo -> add +
  norm kernel -> w1/w3 (SwiGLU) -> w2 -> add + norm kernel -> the next layer's wqkv;
- linked: wo and w2 add the residual and ready the next norm in their epilogues, wqkv and w1/w3
  apply it in theirs: two kernels a layer fewer;
- each of the two links alone ("att": wo -> w1/w3; "ffn": w2 -> the next wqkv, the one the model
  uses: bench/RESULTS.md, twentieth session).
The decoder (26 layers, 1 row, dim 3072, Ada-scaled ffn norm) and the encoder (32 layers, 4 rows,
dim 1280, biases), with the kernels each chain launches (an eager run under the profiler), then
each linked matmul kind alone against its plain form (what a link itself costs a launch). Also
printed: how far apart the chains' last residuals are (they round at different places).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from voxtral_desktop.kernels import fused, mma_q4
from voxtral_desktop.kernels.mma_q4 import MmaQ4, NormedRows, mma_linear, mma_linear_to_norm

DEV = torch.device("cuda")
EPS = 1e-5


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    rows: int
    dim: int
    q: int  # q's columns: the attention output wo reads
    qkv: int
    hidden: int
    biases: bool
    ada: bool  # the ffn norm's extra scale (the decoder's Ada scale)


DECODER = Shape("decoder", 26, 1, 3072, 4096, 6144, 9216, biases=False, ada=True)
ENCODER = Shape("encoder", 32, 4, 1280, 2048, 6144, 5120, biases=True, ada=False)


def random_mma(n: int, k: int, g: torch.Generator) -> MmaQ4:
    """Random packed Q4_0 weights (any words are valid codes), outputs of about the input's size."""
    t, it = n // 16, k // 64
    codes = torch.randint(-(2**31), 2**31, (t, it, 32, 4), dtype=torch.int32, device=DEV, generator=g)
    scales = (torch.rand(t, it, 8, 4, device=DEV, generator=g) + 0.5) / (4.6 * k**0.5)
    return MmaQ4(codes, scales.half(), n, k)


def layer_weights(s: Shape, g: torch.Generator) -> dict[str, object]:
    def bias(n: int) -> torch.Tensor | None:
        return torch.randn(n, device=DEV, generator=g).bfloat16() * 0.1 if s.biases else None

    return {
        "wqkv": random_mma(s.qkv, s.dim, g),
        "bqkv": bias(s.qkv),
        "wo": random_mma(s.dim, s.q, g),
        "bo": bias(s.dim),
        "w13": random_mma(2 * s.hidden, s.dim, g),
        "w2": random_mma(s.dim, s.hidden, g),
        "b2": bias(s.dim),
        "norm_att": (1 + 0.1 * torch.randn(s.dim, device=DEV, generator=g)).bfloat16(),
        "norm_ffn": (1 + 0.1 * torch.randn(s.dim, device=DEV, generator=g)).bfloat16(),
        "ada": (1 + 0.1 * torch.randn(s.dim, device=DEV, generator=g)).bfloat16(),
    }


def as_kernels(s: Shape, layers: list[dict], x0: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        x, pending = x0, None
        for w in layers:
            if pending is None:
                normed = fused.rms_norm(x, w["norm_att"], EPS)
            else:
                x, normed = fused.add_rms_norm(x, pending, w["norm_att"], EPS)
            qkv = mma_linear(normed, w["wqkv"], w["bqkv"])
            o = mma_linear(qkv[:, : s.q].contiguous(), w["wo"], w["bo"])
            x, normed = fused.add_rms_norm(x, o, w["norm_ffn"], EPS, w["ada"] if s.ada else None)
            pending = mma_linear(mma_linear(normed, w["w13"], gated=True), w["w2"], w["b2"])
        assert pending is not None
        return fused.add_rms_norm(x, pending, layers[0]["norm_att"], EPS)[0]

    return run


def linked(
    s: Shape, layers: list[dict], x0: torch.Tensor, att: bool = True, ffn: bool = True
) -> Callable[[], torch.Tensor]:
    """`att`: wo links to the ffn norm; `ffn`: w2 links to the next layer's attention norm
    (either alone says which link costs what)."""
    gammas = [
        (
            (w["norm_ffn"].float() * w["ada"].float()).bfloat16() if s.ada else w["norm_ffn"],
            layers[(i + 1) % len(layers)]["norm_att"],
        )
        for i, w in enumerate(layers)
    ]

    def run() -> torch.Tensor:
        x = x0
        normed: torch.Tensor | NormedRows = fused.rms_norm(x0, layers[0]["norm_att"], EPS)
        for w, (gamma_ffn, att_next) in zip(layers, gammas, strict=True):
            qkv = mma_linear(normed, w["wqkv"], w["bqkv"])
            a = qkv[:, : s.q].contiguous()
            if att:
                x, normed_ffn = mma_linear_to_norm(a, w["wo"], w["bo"], x, gamma_ffn, EPS)
            else:
                ada = w["ada"] if s.ada else None
                x, normed_ffn = fused.add_rms_norm(
                    x, mma_linear(a, w["wo"], w["bo"]), w["norm_ffn"], EPS, ada
                )
            h = mma_linear(normed_ffn, w["w13"], gated=True)
            if ffn:
                x, normed = mma_linear_to_norm(h, w["w2"], w["b2"], x, att_next, EPS)
            else:
                x, normed = fused.add_rms_norm(x, mma_linear(h, w["w2"], w["b2"]), att_next, EPS)
        return x

    return run


def per_kind(s: Shape, layers: list[dict], x0: torch.Tensor) -> dict[str, Callable[[], torch.Tensor]]:
    """Each linked matmul kind alone, layer after layer, beside its plain form: what each link
    itself costs (the chains' difference is the norms' kernels saved minus these)."""
    g = torch.Generator(device=DEV).manual_seed(1)
    a = torch.randn(s.rows, s.q, device=DEV, generator=g).bfloat16()
    h = torch.randn(s.rows, s.dim, device=DEV, generator=g).bfloat16()
    rows = NormedRows(h, h.float().square().reshape(s.rows, -1, 16).sum(-1), EPS)

    def plain_wqkv() -> torch.Tensor:
        return torch.stack([mma_linear(h, w["wqkv"], w["bqkv"])[0, :8] for w in layers])

    def normed_wqkv() -> torch.Tensor:
        return torch.stack([mma_linear(rows, w["wqkv"], w["bqkv"])[0, :8] for w in layers])

    def plain_wo() -> torch.Tensor:
        return torch.stack([mma_linear(a, w["wo"], w["bo"])[0, :8] for w in layers])

    def wo_to_norm() -> torch.Tensor:
        return torch.stack(
            [mma_linear_to_norm(a, w["wo"], w["bo"], x0, w["norm_ffn"], EPS)[0][0, :8] for w in layers]
        )

    hid = torch.randn(s.rows, s.hidden, device=DEV, generator=g).bfloat16()

    def plain_w13() -> torch.Tensor:
        return torch.stack([mma_linear(h, w["w13"], gated=True)[0, :8] for w in layers])

    def normed_w13() -> torch.Tensor:
        return torch.stack([mma_linear(rows, w["w13"], gated=True)[0, :8] for w in layers])

    def plain_w2() -> torch.Tensor:
        return torch.stack([mma_linear(hid, w["w2"], w["b2"])[0, :8] for w in layers])

    def w2_to_norm() -> torch.Tensor:
        return torch.stack(
            [mma_linear_to_norm(hid, w["w2"], w["b2"], x0, w["norm_att"], EPS)[0][0, :8] for w in layers]
        )

    return {
        "wqkv": plain_wqkv, "wqkv NORM_IN": normed_wqkv, "wo": plain_wo, "wo NORM_OUT": wo_to_norm,
        "w13": plain_w13, "w13 NORM_IN": normed_w13, "w2": plain_w2, "w2 NORM_OUT": w2_to_norm,
    }  # fmt: skip


def kernels_in(fn: Callable[[], torch.Tensor]) -> int:
    """CUDA kernels one eager run launches (the chains' own count, as a check)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def graph_of(fn: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    return g, out


def replay_us(g: torch.cuda.CUDAGraph, n: int) -> float:
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            g.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / n)
    return statistics.median(times)


def gated_variants(replays: int) -> None:
    """The decoder's gated w1/w3 alone, plain against NORM_IN, for several (warps, unroll): is the
    NORM_IN variant's loss (5.6 us a launch at the app's 4 warps, unroll 2) the variant's?"""
    s, g = DECODER, torch.Generator(device=DEV).manual_seed(0)
    layers = [{"w13": random_mma(2 * s.hidden, s.dim, g)} for _ in range(s.layers)]
    h = torch.randn(1, s.dim, device=DEV, generator=g).bfloat16()
    rows = NormedRows(h, h.float().square().reshape(1, -1, 16).sum(-1), EPS)
    key = (2 * s.hidden, s.dim, 1, True)
    for variant in [(4, 2), (4, 1), (8, 1), (8, 2), (16, 1)]:
        mma_q4.OVERRIDES[key] = variant
        times = {}
        for name, x in (("plain", h), ("NORM_IN", rows)):
            graph = graph_of(
                lambda x=x: torch.stack([mma_linear(x, w["w13"], gated=True)[0, :8] for w in layers])
            )[0]
            times[name] = replay_us(graph, replays)
        print(
            f"  w1/w3 gated, warps {variant[0]} unroll {variant[1]}: "
            + "  ".join(f"{k} {v:.1f} us" for k, v in times.items()),
            flush=True,
        )
    mma_q4.OVERRIDES.pop(key)


def the_chains(
    s: Shape, g: torch.Generator
) -> tuple[list[dict], torch.Tensor, dict[str, Callable[[], torch.Tensor]]]:
    """Random layers of `s`, an input, and the four chains over them: norm kernels, both links,
    each link alone."""
    layers = [layer_weights(s, g) for _ in range(s.layers)]
    x0 = torch.randn(s.rows, s.dim, device=DEV, generator=g).bfloat16()
    chains = {
        "kernels": as_kernels(s, layers, x0),
        "linked": linked(s, layers, x0),
        "att link only": linked(s, layers, x0, ffn=False),
        "ffn link only": linked(s, layers, x0, att=False),
    }
    return layers, x0, chains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--gated-variants", action="store_true", help="only `gated_variants`")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), flush=True)
    if args.gated_variants:
        with torch.no_grad():
            gated_variants(args.replays)
        return
    g = torch.Generator(device=DEV).manual_seed(0)
    with torch.no_grad():
        for s in (DECODER, ENCODER):
            layers, x0, chains = the_chains(s, g)
            counts = {name: kernels_in(fn) for name, fn in chains.items()}
            graphs = {name: graph_of(fn) for name, fn in chains.items()}
            times: dict[str, list[float]] = {name: [] for name in chains}
            for _ in range(3):
                for name, (graph, _) in graphs.items():
                    times[name].append(replay_us(graph, args.replays))
            torch.cuda.synchronize()
            out_old, out_new = graphs["kernels"][1], graphs["linked"][1]
            diff = (out_new.float() - out_old.float()).norm() / out_old.float().norm()
            print(f"{s.name} ({s.layers} layers, {s.rows} rows) | last residual diff {diff:.2e}", flush=True)
            for name, t in times.items():
                print(f"  {name}: {' / '.join(f'{v:.1f}' for v in t)} us, {counts[name]} kernels", flush=True)
            kinds = {name: graph_of(fn)[0] for name, fn in per_kind(s, layers, x0).items()}
            each = "  ".join(f"{k} {replay_us(gr, args.replays):.1f} us" for k, gr in kinds.items())
            print(f"  {s.layers} launches of one kind: {each}", flush=True)
            del graphs, chains, layers, kinds
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
