"""A step matmul with its weights in L2 against the same from DRAM (device).

    python bench/l2_resident.py [--replays 20]

For each of the streaming step's matrix shapes (random packed Q4 weights, the app's kernel
variant, the step's rows: 1 for the decoder, 4 for the encoder), a CUDA graph of n launches with
programmatic dependent launch, replayed back to back (median of 5 x `--replays`):
- DRAM: n distinct matrices, n chosen so that they hold over 3x the GPU's L2 (each is evicted
  before its next use);
- L2: one matrix launched n times (after its first launch it is in L2).
The difference is what a matmul could gain if the next matrix's weights were in L2 when it
starts (bench/ab_read_ahead.py asks for them ahead, kernels/mma_q4.link_ahead).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

import torch

sys.path.insert(0, os.path.dirname(__file__))
from ab_norm_epilogue import random_mma, replay_us

from voxtral_desktop.kernels.mma_q4 import MmaQ4, mma_linear

DEV = torch.device("cuda")
SHAPES = [  # (name, out, in, rows, gated)
    ("decoder wqkv", 6144, 3072, 1, False),
    ("decoder wo", 3072, 4096, 1, False),
    ("decoder w1/w3", 18432, 3072, 1, True),
    ("decoder w2", 3072, 9216, 1, False),
    ("encoder wqkv", 6144, 1280, 4, False),
    ("encoder wo", 1280, 2048, 4, False),
    ("encoder w1/w3", 10240, 1280, 4, True),
    ("encoder w2", 1280, 5120, 4, False),
]


def nbytes(m: MmaQ4) -> int:
    """Bytes of a packed matrix: its codes and scales."""
    return m.codes.numel() * m.codes.element_size() + m.scales.numel() * m.scales.element_size()


def graph_us(mats: list[MmaQ4], x: torch.Tensor, gated: bool, replays: int) -> float:
    """Mean GPU time of one launch in a graph of launches over `mats` (median of 5 rounds)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for m in mats[:2]:
            mma_linear(x, m, None, gated=gated)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            for m in mats:
                mma_linear(x, m, None, gated=gated)
    torch.cuda.current_stream().wait_stream(stream)
    graph.replay()
    return replay_us(graph, replays) / len(mats)


def each_step_matrix() -> Iterator[tuple[str, list[MmaQ4], torch.Tensor, bool]]:
    """The GPU's name and L2 printed; then for each of `SHAPES`: its name, random matrices that
    hold over 3x the L2 (the first also serves as the one launched again and again), the
    activation rows and whether the matrix is a gated pair. Each is freed before the next."""
    l2 = torch.cuda.get_device_properties(DEV).L2_cache_size
    print(f"{torch.cuda.get_device_name()}, L2 {l2 / 2**20:.0f} MiB", flush=True)
    g = torch.Generator(device=DEV).manual_seed(0)
    for name, n, k, rows, gated in SHAPES:
        one = random_mma(n, k, g)
        count = max(8, -(-3 * l2 // nbytes(one)))
        mats = [one] + [random_mma(n, k, g) for _ in range(count - 1)]
        yield name, mats, torch.randn(rows, k, device=DEV).bfloat16(), gated
        del mats, one
        torch.cuda.empty_cache()


def dram_and_l2_us(mats: list[MmaQ4], x: torch.Tensor, gated: bool, replays: int) -> tuple[float, float]:
    """One launch's time over the distinct `mats` (from DRAM) and over the first one repeated (L2)."""
    return graph_us(mats, x, gated, replays), graph_us([mats[0]] * len(mats), x, gated, replays)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=20)
    args = parser.parse_args()
    with torch.no_grad():
        for name, mats, x, gated in each_step_matrix():
            dram, cached = dram_and_l2_us(mats, x, gated, args.replays)
            mb, tb = nbytes(mats[0]) / 2**20, nbytes(mats[0]) / 1e6
            print(
                f"{name:14s} {mb:6.2f} MiB x {len(mats):3d}: DRAM {dram:6.2f} us ({tb / dram:5.2f} TB/s),"
                f" L2 {cached:6.2f} us ({tb / cached:5.2f} TB/s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
