"""cuBLAS or cuBLASLt for the folder's matmuls (device): PyTorch's `preferred_blas_library`.

    python bench/ab_blas_library.py [--folder] [--rounds 2]

At 256 rows (a folder's decoder step) the dense matmuls are cuBLAS's; PyTorch can route them
through cuBLASLt instead, whose heuristics may pick other kernels. 1. Each decoder matrix at 256
rows (CUDA graphs of 26 calls over 26 different weights, best of 3) under each library;
2. `--folder`: the bench's folder batch (256 x 60 s) under each, alternating.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(__file__))
from full_model import add_folder_arguments
from tune_q4 import graph_time_us

parser = argparse.ArgumentParser()
add_folder_arguments(parser)
args = parser.parse_args()
dev = torch.device("cuda")
print = functools.partial(print, flush=True)  # the log is read as it runs
SHAPES = {"wqkv": (6144, 3072), "wo": (3072, 4096), "w13": (18432, 3072), "w2": (3072, 9216)}
LIBRARIES = ("cublas", "cublaslt")


def matrices() -> None:
    for name, (n, k) in SHAPES.items():
        x = torch.randn(256, k, device=dev, dtype=torch.bfloat16)
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(26)]
        times = {}
        for _ in range(2):
            for lib in LIBRARIES:
                torch.backends.cuda.preferred_blas_library(lib)
                us = (
                    graph_time_us(lambda x=x, ws=ws: [F.linear(x, w) for w in ws], calls=1, reps=3, pick=min)
                    / 26
                )
                times.setdefault(lib, []).append(us)
        print(f"{name} ({n} x {k}, 256 rows): " + "; ".join(
            f"{lib} {' / '.join(f'{t:.1f}' for t in ts)} us" for lib, ts in times.items()))  # fmt: skip
        ws.clear()
    torch.backends.cuda.preferred_blas_library("cublas")


def folder() -> None:
    from full_model import folder_arms

    def use(lib: str):  # type: ignore[no-untyped-def]
        return lambda: torch.backends.cuda.preferred_blas_library(lib)

    arms = [(lib, use(lib)) for lib in LIBRARIES]
    folder_arms(arms + arms, args.files, args.seconds, args.rounds)
    torch.backends.cuda.preferred_blas_library("cublas")


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), torch.backends.cuda.preferred_blas_library())
    matrices()
    if args.folder:
        folder()
