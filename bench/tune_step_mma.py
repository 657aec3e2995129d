"""The Q4 mma kernel's variant per matrix, chosen inside the streaming step's CUDA graph (device).

    python bench/tune_step_mma.py [--replays 150] [--json OUT.json] [--unrolls 0,1,2,3,4]
        [--warps 2,4,8,16] [--shapes 18432x3072,131072x3072]
    python bench/tune_step_mma.py --ab 300   # the app's table against the heuristic, fed steps

`bench/tune_mma.py` times each matrix alone; in the step the matmuls follow each other with
programmatic dependent launch, so a variant's first loads overlap the kernel before it, and the
best choice alone need not be the best in the chain. Here the full-size random model's live
session (mma kernel, CUDA graphs) is warmed up, the state saved, and for each matrix shape of
the step (one coordinate at a time, the others at their current choice) the step's graph is
captured again with each (warps, unroll) and replayed back to back from the same saved state.
Prints the replay time per variant and the best per shape; then, alternated, the app's own
choice ("default": its GPU's `TUNED` entries where it has them), the heuristic alone
(`choose_warps`, `UNROLL`) and the sweep's best choices together.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels import mma_q4
from voxtral_desktop.model.voxtral import VoxtralModel


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--warm", type=int, default=100, help="positions fed before the state is saved")
    parser.add_argument("--json", default="")
    parser.add_argument(
        "--unrolls", default="1,2,3,4", help="unrolls swept (0: weights staged in shared memory)"
    )
    parser.add_argument("--warps", default="4,8,16", help="warps a tile swept")
    parser.add_argument("--shapes", default="", help="only these matrices, e.g. 18432x3072,3072x9216 (N x K)")
    parser.add_argument(
        "--ab",
        type=int,
        default=0,
        help="no sweep: N fed steps, heuristic vs the app's table",
    )
    return parser.parse_args()


@dataclass(frozen=True)
class Saved:
    """A live session's state between steps: its caches, the token fed back on the device, and
    the samples behind mel frames not yet taken."""

    encoder: dict
    decoder: dict
    token: torch.Tensor
    mel: object

    @classmethod
    def of(cls, session: StreamingSession) -> Saved:
        st, graph = session.state, session.graph
        assert graph is not None
        return cls(
            st.encoder.snapshot(), st.decoder.cache.snapshot(), graph.token.clone(), copy.deepcopy(st.mel)
        )

    def restore(self, session: StreamingSession) -> None:
        st, graph = session.state, session.graph
        assert graph is not None
        st.encoder.restore(self.encoder)
        st.decoder.cache.restore(self.decoder)
        graph.token.copy_(self.token)
        st.mel = copy.deepcopy(self.mel)  # type: ignore[assignment]


def shapes_of_step(session: StreamingSession, saved: Saved) -> Counter:
    """(n, k, n-tiles, gated) of every mma call in one capture of the step, with its count."""
    seen: Counter = Counter()
    original = mma_q4.choose_variant

    def recording(
        n: int, k: int, nt: int, gated: bool = False, device_index: int | None = None
    ) -> tuple[int, int]:
        seen[(n, k, nt, gated)] += 1
        return original(n, k, nt, gated, device_index)

    mma_q4.choose_variant = recording
    try:
        recapture(session, saved)
    finally:
        mma_q4.choose_variant = original
    return seen


def recapture(session: StreamingSession, saved: Saved) -> None:
    """The step's graphs captured again (with the kernels' current settings), from `saved`
    (the capture's warm-up runs and its reset change the state)."""
    graph = session.graph
    assert graph is not None
    graph.graphs.clear()
    graph._capture_all()
    saved.restore(session)


def replay_us(session: StreamingSession, saved: Saved, n: int) -> float:
    """Median over 3 rounds of the mean GPU time of `n` back-to-back replays from `saved`."""
    graph = session.graph
    assert graph is not None
    st = session.state
    g = graph.graphs[graph.bucket_for(st.decoder.cache.next_pos)]
    rounds = []
    for _ in range(3):
        saved.restore(session)
        for _ in range(5):
            g.replay()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            g.replay()
        end.record()
        torch.cuda.synchronize()
        rounds.append(start.elapsed_time(end) / n * 1e3)
    saved.restore(session)
    return sorted(rounds)[1]


def candidates(
    n: int,
    k: int,
    nt: int,
    gated: bool,
    unrolls: tuple[int, ...] = (1, 2, 3, 4),
    warps: tuple[int, ...] = (4, 8, 16),
) -> list[tuple[int, int]]:
    """unroll 0: the weights staged in shared memory (q4_mma.cu)."""
    iters = k // mma_q4.STEP_COLS
    fits = [w for w in warps if w <= max(4, iters) and w * nt <= 64 and (w <= 4 or w <= iters)]
    return [(w, u) for w in fits for u in unrolls]


def warm_session(warm: int) -> tuple[StreamingSession, Saved, list[np.ndarray]]:
    """The full-size model's live session (CUDA graphs) fed `warm` positions of noise, its saved
    state, and the remaining chunks of 80 ms."""
    model, tok = on_the_gpu()
    chunks = noise_chunks(1500)  # 120 s
    return (*warmed(model, tok, chunks[:warm]), chunks[warm:])


def noise_chunks(positions: int) -> list[np.ndarray]:
    """`positions` chunks of 80 ms of the bench's noise (seed 0), in order."""
    audio = noise(positions * SAMPLES_PER_TOKEN / SAMPLE_RATE)
    return [audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio), SAMPLES_PER_TOKEN)]


def warmed(
    model: VoxtralModel, tok: TekkenTokenizer, chunks: list[np.ndarray]
) -> tuple[StreamingSession, Saved]:
    """A new live session of `model` (CUDA graphs) fed `chunks`, and its saved state."""
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    with torch.no_grad():
        for c in chunks:
            session.feed(c)
    torch.cuda.synchronize()
    return session, Saved.of(session)


def fed_steps(
    session: StreamingSession, saved: Saved, chunks: list[np.ndarray]
) -> tuple[np.ndarray, list[int]]:
    """`session.feed` of each chunk from `saved` (ms each) and the tokens; the state restored."""
    saved.restore(session)
    times: list[float] = []
    tokens: list[int] = []
    for c in chunks:
        t0 = time.perf_counter()
        tokens.extend(t.id for t in session.feed(c).tokens)
        times.append(time.perf_counter() - t0)
    saved.restore(session)
    return np.asarray(times) * 1e3, tokens


def alternate_fed(
    session: StreamingSession,
    saved: Saved,
    chunks: list[np.ndarray],
    arms: dict[str, Callable[[], None]],
    replays: int,
) -> None:
    """Each arm (a function that sets the kernels' settings) alternated 3x from `saved`: the
    step's graph captured again, replayed back to back, then the chunks fed (p50 / p95) and
    their tokens compared with the first run's."""
    first: list[int] = []
    for _ in range(3):
        for name, apply in arms.items():
            apply()
            recapture(session, saved)
            first = measure_arm(name, session, saved, chunks, replays, first)


def measure_arm(
    name: str,
    session: StreamingSession,
    saved: Saved,
    chunks: list[np.ndarray],
    replays: int,
    first: list[int],
) -> list[int]:
    """One arm's step graph replayed back to back from `saved`, then the chunks fed (p50 / p95)
    and their tokens against `first` (the first run's), printed; returns `first`, or these
    tokens if it is empty."""
    replay = replay_us(session, saved, replays)
    ms, tokens = fed_steps(session, saved, chunks)
    first = first or tokens
    same = sum(x == y for x, y in zip(first, tokens, strict=False))
    print(
        f"{name:9s} replay {replay:7.1f} us | feed p50 {np.percentile(ms, 50):.3f} ms,"
        f" p95 {np.percentile(ms, 95):.3f} ms | {len(tokens)} tokens, {same} as the first run's",
        flush=True,
    )
    return first


def ab_setup() -> tuple[argparse.Namespace, VoxtralModel, TekkenTokenizer, list[np.ndarray]]:
    """What the same-process A/B scripts share: their arguments (--warm positions fed before the
    state is saved, --replays, --steps fed), the full-size model and the noise chunks."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=100, help="positions fed before the state is saved")
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    model, tok = on_the_gpu()
    return args, model, tok, noise_chunks(args.warm + args.steps + 1)


def ab_alternate(
    sessions: dict[str, tuple[StreamingSession, Saved]], chunks: list[np.ndarray], args: argparse.Namespace
) -> None:
    """Each session's step replayed and `args.steps` chunks fed from its saved state, the sessions
    alternated 3x, every run's tokens against the first run's (`measure_arm`)."""
    first: list[int] = []
    fed = chunks[args.warm : args.warm + args.steps]
    for _ in range(3):
        for name, (session, saved) in sessions.items():
            first = measure_arm(name, session, saved, fed, args.replays, first)


def ab_setting(module: object, name: str, arms: dict[str, object]) -> None:
    """A same-process A/B of one module setting (`ab_setup`'s arguments): a live session captured
    and warmed under each arm's value, the module's own value put back, then `ab_alternate`."""
    args, model, tok, chunks = ab_setup()
    app = getattr(module, name)
    with torch.no_grad():
        sessions = {}
        for arm, value in arms.items():
            setattr(module, name, value)  # captured (and warmed) so
            sessions[arm] = warmed(model, tok, chunks[: args.warm])
        setattr(module, name, app)
        ab_alternate(sessions, chunks, args)


def heuristic_variants(shapes: Counter) -> dict[mma_q4.Variant, tuple[int, int]]:
    return {k: (mma_q4.choose_warps(k[0] // 16, k[1] // 64, k[2]), mma_q4.UNROLL) for k in shapes}


def feed_ab(session: StreamingSession, saved: Saved, chunks: list[np.ndarray], args) -> None:
    """The heuristic's variants (`choose_warps`, `UNROLL`) against the app's (its GPU's `TUNED`
    table), alternated 3x from the same saved state: replays back to back, then `args.ab` fed
    steps (session.feed of 80 ms, p50 / p95) and their tokens."""
    heuristic = heuristic_variants(shapes_of_step(session, saved))

    def use(table: dict) -> Callable[[], None]:
        def apply() -> None:
            mma_q4.OVERRIDES.clear()
            mma_q4.OVERRIDES.update(table)

        return apply

    alternate_fed(
        session, saved, chunks[: args.ab], {"heuristic": use(heuristic), "app": use({})}, args.replays
    )
    mma_q4.OVERRIDES.clear()


def main() -> None:
    args = arguments()
    session, saved, chunks = warm_session(args.warm)
    if args.ab:
        with torch.no_grad():
            feed_ab(session, saved, chunks, args)
        return
    with torch.no_grad():
        shapes = shapes_of_step(session, saved)
        print("matmuls of the step (n, k, n-tiles, gated): count, default (warps, unroll)", flush=True)
        for key, count in sorted(shapes.items()):
            print(f"  {key}: {count}, {mma_q4.choose_variant(key[0], key[1], key[2], key[3], 0)}", flush=True)
        base = replay_us(session, saved, args.replays)
        print(f"default: {base:.1f} us a replay", flush=True)
        results: dict[str, dict[str, float]] = {}
        only = {tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",") if s}
        for key in sorted(shapes, key=lambda s: -shapes[s] * s[0] * s[1]):
            if only and key[:2] not in only:
                continue
            default = mma_q4.choose_variant(key[0], key[1], key[2], key[3], 0)
            times = {}
            unrolls = tuple(int(u) for u in args.unrolls.split(","))
            swept = candidates(*key, unrolls=unrolls, warps=tuple(int(w) for w in args.warps.split(",")))
            for variant in swept if default in swept else [default, *swept]:
                mma_q4.OVERRIDES[key] = variant
                recapture(session, saved)
                times[variant] = replay_us(session, saved, args.replays)
            ref = times.get(default, base)
            best = min(times, key=times.__getitem__)
            row = "  ".join(f"w{w}u{u} {t - ref:+6.1f}" for (w, u), t in times.items())
            print(f"{key} x{shapes[key]} default w{default[0]}u{default[1]} {ref:.1f} us | {row}", flush=True)
            # Keep the best only if it beats the default by more than the noise (2 us).
            mma_q4.OVERRIDES[key] = best if times[best] < ref - 2.0 else default
            results[str(key)] = {f"w{w}u{u}": t for (w, u), t in times.items()}
        chosen = dict(mma_q4.OVERRIDES)
        print("chosen:", {str(k): v for k, v in chosen.items()}, flush=True)
        # "default": what the app runs (its TUNED table, if the GPU has one); "heuristic": none.
        pair = {"default": {}, "heuristic": heuristic_variants(shapes), "chosen": chosen}
        alt: dict[str, list[float]] = {name: [] for name in pair}
        for _ in range(3):
            for name, table in pair.items():
                mma_q4.OVERRIDES.clear()
                mma_q4.OVERRIDES.update(table)
                recapture(session, saved)
                alt[name].append(replay_us(session, saved, args.replays))
        print(f"alternated, us a replay: {alt}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "device": torch.cuda.get_device_name(),
                    "shapes": {str(k): v for k, v in shapes.items()},
                    "sweep": results,
                    "chosen": {str(k): v for k, v in chosen.items()},
                    "alternated": alt,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
