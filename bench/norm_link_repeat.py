"""Are the norm-linked chains deterministic? Each replay against the first (device).

    python bench/norm_link_repeat.py [--replays 400]

bench/ab_norm_epilogue.py's chains (full-size random Q4 matrices, CUDA graphs with programmatic
dependent launch): norm kernels, both links, each link alone. Every chain's graph is replayed
`--replays` times, interleaved with the others' replays as that script does, and each output is
compared bit for bit with the chain's first replay; then eager runs the same way. The same
inputs and weights must give the same bits every time: a mismatch means a race (a read of
something not yet written, or a stale cache line) in the kernels or in the launches' order.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from ab_norm_epilogue import DECODER, DEV, ENCODER, graph_of, the_chains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=400)
    parser.add_argument("--eager", type=int, default=30)
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), flush=True)
    g = torch.Generator(device=DEV).manual_seed(0)
    with torch.no_grad():
        for s in (DECODER, ENCODER):
            layers, _, chains = the_chains(s, g)
            graphs = {name: graph_of(fn) for name, fn in chains.items()}
            first = {}
            for name, (graph, out) in graphs.items():
                graph.replay()
                torch.cuda.synchronize()
                first[name] = out.clone()
            bad = {name: 0 for name in graphs}
            worst = {name: 0.0 for name in graphs}
            for _ in range(args.replays):
                for name, (graph, out) in graphs.items():
                    graph.replay()
                    if not torch.equal(out, first[name]):
                        bad[name] += 1
                        d = (out.float() - first[name].float()).norm() / first[name].float().norm()
                        worst[name] = max(worst[name], d.item())
            ref = first["kernels"].float()
            for name in graphs:
                rel = ((first[name].float() - ref).norm() / ref.norm()).item()
                print(
                    f"{s.name}: {name}: {bad[name]} of {args.replays} replays differ from the first"
                    f" (worst {worst[name]:.2e}); first replay vs norm kernels' {rel:.2e}",
                    flush=True,
                )
            for name, fn in chains.items():
                outs = [fn() for _ in range(args.eager)]
                n_bad = sum(not torch.equal(o, first[name]) for o in outs)
                print(f"{s.name}: {name}: eager, {n_bad} of {args.eager} differ from the graph", flush=True)
            del graphs, chains, layers
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
