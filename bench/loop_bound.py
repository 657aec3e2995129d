"""What bounds the Q4 mma kernel's loop: its loads or its arithmetic (device).

    python bench/loop_bound.py [--replays 20]

The twenty-third session found the step's matmuls no more than 7 % faster with their weights
already in L2 (bench/l2_resident.py), so their time is not DRAM's. Here each step matrix (the
app's kernel variant and rows, random packed weights) is timed as bench/l2_resident.py does, in
a CUDA graph of launches over distinct matrices that hold 3x the L2 ("DRAM") and over one matrix
launched again and again ("L2"), with the kernel compiled three ways:
- app: as the app runs it;
- no math (`Q4_LOOP_NO_MATH`): the loop streams the weights as before but only XORs each
  iteration's words into an accumulator (no activations, no dequantisation, no mma);
- no loads (`Q4_LOOP_NO_LOADS`): the loop does all its arithmetic and activation loads, on the
  first weights loaded before the wait changed by an add a word each pass (so that their
  dequantisation is not hoisted out of the loop), and streams no more weights.
The defines only switch the register loop (the staged variants, unroll 0, are not changed) and
never appear in the app, whose cubin is byte-identical with or without the hooks (checked with
NVRTC for sm_90). The outputs of the two hooked forms are garbage; only their time is of use.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from l2_resident import DEV, dram_and_l2_us, each_step_matrix, nbytes

from voxtral_desktop.kernels import mma_q4

FORMS = {"app": "", "no math": "#define Q4_LOOP_NO_MATH\n", "no loads": "#define Q4_LOOP_NO_LOADS\n"}


def compiled_as(prefix: str) -> None:
    """Every variant compiled from here on with `prefix` before q4_mma.cu."""
    source = ORIGINAL_SOURCE

    def prefixed(variants) -> str:
        return prefix + source(variants)

    mma_q4._source = prefixed
    mma_q4._kernel.cache_clear()


ORIGINAL_SOURCE = mma_q4._source


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=20)
    args = parser.parse_args()
    with torch.no_grad():
        for name, mats, x, gated in each_step_matrix():
            (n, k), rows = (mats[0].out_features, mats[0].in_features), x.shape[0]
            nt = 1 << max(0, (rows - 1) // 8).bit_length()
            warps, unroll = mma_q4.choose_variant(n, k, nt, gated, DEV.index or 0)
            cells = []
            for form, prefix in FORMS.items():
                compiled_as(prefix)
                dram, cached = dram_and_l2_us(mats, x, gated, args.replays)
                cells.append(f"{form} {dram:6.2f} / {cached:6.2f}")
            compiled_as("")
            print(
                f"{name:14s} w{warps}u{unroll} {nbytes(mats[0]) / 2**20:6.2f} MiB, us a launch DRAM / L2: "
                + " | ".join(cells),
                flush=True,
            )


if __name__ == "__main__":
    main()
