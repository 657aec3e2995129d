"""Where the streaming step's Q4 matmuls lose time, chained as in the step (device).

    python bench/persistent_chain.py [--layers 26] [--reps 20] [--variants 16x4x2 16x8x2 16x4x1]
    python bench/persistent_chain.py --compile-only   # NVRTC compile check, no GPU needed
                                                      # (VOXTRAL_NVRTC=path/to/libnvrtc.so)

The tenth session's ablation left ~2.0 ms of the 2.57 ms step replay to the 235 Q4 matmuls,
whose 2.49 GB take 0.52 ms at the H200's bandwidth. This runs the same matmuls chained (each
one's output the next one's input), in CUDA graphs:

- landed: one `mma_linear` launch per matmul (PDL between them), bf16 in and out;
- probes of the landed kernel, built by editing its source text: the sixteenth session's
  kernel before (eight 4-byte activation loads an iteration; zeros selected past the last
  row), the nibbles fed to the mma undecoded, constant activations, both (the last three
  give wrong outputs: they time what decoding and reading activations cost);
- persistent (WARPSxPxBARRIER): `persistent_chain.cu`, one launch for the whole chain, a grid
  barrier between matmuls (1: count and generation with fences; 2: a counter that only grows,
  release/acquire), each warp's share of the next matmul's weights loaded before the barrier;
  checked matmul by matmul against torch (exact weights in fp32);
- the cost of one grid barrier alone, and the same chains over tiny matrices (the cost of a
  matmul beyond its bytes).

Chains: the decoder's 26 layers (q/k/v 6144 x 3072, output 3072 x 4096 over the first 4096
q/k/v outputs, gate/up 18432 x 3072 with SwiGLU, down 3072 x 9216) and the head (131072 x 3072)
at 1 row; the encoder's 32 layers (6144 x 1280, 1280 x 2048, 10240 x 1280, 1280 x 5120) at 4
rows. Attention, norms and RoPE are left out.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(__file__))
import tune_q4

from voxtral_desktop.kernels import mma_q4, pdl

HERE = Path(__file__).parent
DEC = [(6144, 3072), (3072, 4096), (18432, 3072), (3072, 9216)]  # (N, K): wqkv, wo, w13 (gated), w2
ENC = [(6144, 1280), (1280, 2048), (10240, 1280), (1280, 5120)]
HEAD = (131072, 3072)
LANDED_SOURCE = mma_q4.SOURCE

parser = argparse.ArgumentParser()
parser.add_argument("--layers", type=int, default=0, help="0: 26 decoder, 32 encoder layers")
parser.add_argument("--reps", type=int, default=20)
parser.add_argument("--calls", type=int, default=5, help="chains per graph replay")
parser.add_argument("--variants", nargs="+", default=["16x4x2", "16x8x2", "16x4x1"], help="WARPSxPxBARRIER")
parser.add_argument("--blocks-per-sm", type=int, nargs="+", default=[1])
parser.add_argument("--compile-only", action="store_true")
args = parser.parse_args()

VARIANTS = [tuple(int(v) for v in s.split("x")) for s in args.variants]


def source() -> str:
    wrappers = [
        f'extern "C" __global__ void __launch_bounds__({w * 32}) chain_w{w}_p{p}_b{b}(const ChainOp* ops,'
        f" int n_ops, int M, GridBarrier* bar, float* zero, long long zero_count)"
        f" {{ chain<{w}, {p}, {b}>(ops, n_ops, M, bar, zero, zero_count); }}"
        for w, p, b in VARIANTS
    ] + [
        f'extern "C" __global__ void barriers_b{b}(GridBarrier* bar, int n) {{ barriers<{b}>(bar, n); }}'
        for b in (1, 2)
    ]
    return "\n".join([mma_q4.SOURCE.read_text(), (HERE / "persistent_chain.cu").read_text(), *wrappers, ""])


DEV = torch.device("cuda")
torch.manual_seed(0)
SM = 0 if args.compile_only else torch.cuda.get_device_properties(DEV).multi_processor_count


def random_packed(n: int, k: int) -> mma_q4.MmaQ4:
    codes = torch.randint(1, 16, (n, k), dtype=torch.uint8, device=DEV)  # q - 8 in -7..7: mean 0
    scales = ((0.5 + torch.rand(n, k // 32, device=DEV)) / (4.3 * k**0.5)).to(torch.float16)
    words, s = mma_q4.pack(codes, scales)
    return mma_q4.MmaQ4(words, s, n, k)


def dense(p: mma_q4.MmaQ4) -> torch.Tensor:
    return mma_q4._dequantize(*mma_q4.unpack(p), torch.float32)


def gated_output(i: int, ops, layer_ops: int) -> bool:
    return i % layer_ops == 2 and i < len(ops) - (len(ops) % layer_ops)


def swiglu_pairs(y: torch.Tensor) -> torch.Tensor:
    """[M, 2H] gate/up rows interleaved by 8 (fp32) -> silu(bf16 gate) * bf16 up, rounded to bf16."""
    m, n = y.shape
    pairs = y.reshape(m, n // 16, 2, 8)
    gate = pairs[:, :, 0].reshape(m, -1).bfloat16().float()
    up = pairs[:, :, 1].reshape(m, -1).bfloat16().float()
    return (torch.nn.functional.silu(gate) * up).bfloat16()


def next_input(i: int, y: torch.Tensor, ops, layer_ops: int) -> torch.Tensor:
    return swiglu_pairs(y) if gated_output(i, ops, layer_ops) else y.bfloat16()


def build(shapes, layers: int, head: bool, x0: torch.Tensor) -> list[mma_q4.MmaQ4]:
    """Random matrices whose scales are set, one after the other, so that each output has a std
    near 1 (2 for a gate/up pair) on the chain from `x0`: there are no norms between them, and
    SwiGLU would otherwise shrink or grow the values geometrically."""
    ops, x = [], x0.bfloat16()
    all_shapes = [sh for _ in range(layers) for sh in shapes] + ([HEAD] if head else [])
    for i, (n, k) in enumerate(all_shapes):
        p = random_packed(n, k)
        ops.append(p)
        y = x[:, :k].float() @ dense(p).T
        gain = (2.0 if i % len(shapes) == 2 and i < layers * len(shapes) else 1.0) / float(y.std())
        p.scales.mul_(gain)
        gated = i % len(shapes) == 2 and i < layers * len(shapes)
        x = swiglu_pairs(y * gain) if gated else (y * gain).bfloat16()
    return ops


def landed(ops, x0: torch.Tensor, layer_ops: int) -> torch.Tensor:
    x = x0.bfloat16()
    for i, p in enumerate(ops):
        xi = x[:, : p.in_features]
        x = mma_q4.mma_linear(xi.contiguous(), p, gated=gated_output(i, ops, layer_ops))
    return x


def check_each(ops, x0: torch.Tensor, outputs, layer_ops: int) -> str:
    """The largest relative error of one matmul's output over the chain, each matmul fed the
    kernel's own previous output (errors do not compound along the chain). With no norms
    between them, SwiGLU (degree 2) doubles any deviation of scale at every layer, so the
    values die out or overflow after some 10-20 layers whatever the weights: only matmuls
    whose reference output has a std in [1e-3, 1e3] are compared, and counted."""
    worst, checked, x = 0.0, 0, x0.bfloat16()
    for i, (p, y) in enumerate(zip(ops, outputs, strict=True)):
        ref = x[:, : p.in_features].float() @ dense(p).T
        if 1e-3 <= float(ref.std()) <= 1e3:
            worst, checked = max(worst, rel(y, ref)), checked + 1
        x = next_input(i, y, ops, layer_ops)
    return f"worst rel. error {worst:.2e} over {checked} of {len(ops)} matmuls"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


class Chain:
    """The persistent kernel's launch over `ops`: its table, output buffers and barrier."""

    def __init__(self, ops, m: int, layer_ops: int, kernel, warps: int, blocks: int):
        self.m, self.kernel, self.threads, self.blocks = m, kernel, warps * 32, blocks
        sizes = [m * p.out_features for p in ops]
        self.out = torch.zeros(sum(sizes) + 4, dtype=torch.float32, device=DEV)
        self.x0 = torch.zeros(m, ops[0].in_features, dtype=torch.float32, device=DEV)
        self.ys, off = [], 0
        for size, p in zip(sizes, ops, strict=True):
            self.ys.append(self.out[off : off + size].view(m, p.out_features))
            off += size
        rows = []
        for i, p in enumerate(ops):
            x = self.x0 if i == 0 else self.ys[i - 1]
            gated_in = i > 0 and gated_output(i - 1, ops, layer_ops)
            rows.append(
                [
                    p.codes.data_ptr(),
                    p.scales.data_ptr(),
                    x.data_ptr(),
                    self.ys[i].data_ptr(),
                    p.out_features,
                    p.in_features,
                    int(gated_in),
                    x.shape[1],
                ]
            )
        self.table = torch.tensor(rows, dtype=torch.int64, device=DEV)
        self.n_ops = len(ops)
        self.barrier = torch.zeros(4, dtype=torch.int32, device=DEV)  # GridBarrier: 16 bytes
        self.slots = [
            ctypes.c_void_p(self.table.data_ptr()),
            ctypes.c_int(self.n_ops),
            ctypes.c_int(m),
            ctypes.c_void_p(self.barrier.data_ptr()),
            ctypes.c_void_p(self.out.data_ptr()),
            ctypes.c_longlong(self.out.numel()),
        ]
        self.argv = (ctypes.c_void_p * len(self.slots))(*[ctypes.addressof(a) for a in self.slots])
        self.attribute = pdl.LaunchAttribute(id=2, value=1)  # CU_LAUNCH_ATTRIBUTE_COOPERATIVE
        # Cooperative: the driver refuses a grid that cannot be resident at once (the barrier
        # would hang). `cooperative = False` (a graph that will not capture it) is safe only at
        # one block per SM.
        self.config = pdl.LaunchConfig(attrs=ctypes.pointer(self.attribute), num_attrs=1)
        self.config.grid[0], self.config.grid[1], self.config.grid[2] = blocks, 1, 1
        self.config.block[0], self.config.block[1], self.config.block[2] = self.threads, 1, 1
        self.config.shared_bytes = max(m * (p.in_features // 2 + 4) * 4 for p in ops)  # the input's copy
        assert self.config.shared_bytes <= 48 * 1024
        self.driver = torch.cuda._utils._get_gpu_runtime_library()

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        self.x0.copy_(x0)
        self.config.stream = torch.cuda.current_stream().cuda_stream
        rc = self.driver.cuLaunchKernelEx(ctypes.byref(self.config), self.kernel.func, self.argv, None)
        if rc != 0:
            raise RuntimeError(f"cuLaunchKernelEx failed: CUDA error {rc}")
        return self.ys[-1]


def run(name: str, shapes, layers: int, head: bool, m: int, kernels, probes) -> None:
    layer_ops = len(shapes)
    x0 = torch.randn(m, shapes[0][1], device=DEV)
    ops = build(shapes, layers, head, x0)
    nbytes = sum(p.codes.numel() * 4 + p.scales.numel() * 2 for p in ops)
    print(
        f"\n== {name}: {len(ops)} matmuls at {m} row(s), {nbytes / 1e9:.3f} GB of Q4 weights "
        f"({nbytes / 4.8e12 * 1e6:.0f} us at 4.8 TB/s)",
        flush=True,
    )
    t_landed = None
    for label, src in probes:
        mma_q4._kernel.cache_clear()
        mma_q4.SOURCE = src
        landed(ops, x0, layer_ops)
        torch.cuda.synchronize()
        t = graph_time_us(lambda ops=ops: landed(ops, x0, layer_ops))
        t_landed = t_landed or t
        print(f"{label}: {t:.1f} us a chain ({nbytes / t / 1e6:.2f} TB/s, {t_landed / t:.2f}x)", flush=True)
    mma_q4._kernel.cache_clear()
    mma_q4.SOURCE = LANDED_SOURCE
    for (w, p, b), kernel in kernels.items():
        for per_sm in args.blocks_per_sm:
            chain = Chain(ops, m, layer_ops, kernel, w, SM * per_sm)
            try:
                chain(x0)
                got = [y.clone() for y in chain.ys]
                torch.cuda.synchronize()
            except RuntimeError as e:
                print(f"persistent {w} warps, {p} ahead, barrier {b}, {per_sm}/SM: {e}", flush=True)
                continue
            line = (
                f"persistent {w} warps x {per_sm}/SM, {p} units ahead, barrier {b}: "
                f"{check_each(ops, x0, got, layer_ops)}"
            )
            try:
                t = graph_time_us(lambda chain=chain: chain(x0))
            except RuntimeError as e:
                if per_sm != 1:
                    print(line + f"; no graph: {e}", flush=True)
                    continue
                line += " (graph without the cooperative attribute)"
                chain.config.num_attrs = 0
                t = graph_time_us(lambda chain=chain: chain(x0))
            print(
                line + f"; {t:.1f} us a chain ({nbytes / t / 1e6:.2f} TB/s, {t_landed / t:.2f}x)", flush=True
            )
    del ops
    torch.cuda.empty_cache()


def barrier_cost(module) -> None:
    """us per grid barrier, from one launch of 1,000 (one block of 512 threads per SM)."""
    bar = torch.zeros(4, dtype=torch.int32, device=DEV)
    driver = torch.cuda._utils._get_gpu_runtime_library()
    for b in (1, 2):
        func = module[f"barriers_b{b}"].func
        times = []
        for n in (0, 1000, 0, 1000):
            slots = [ctypes.c_void_p(bar.data_ptr()), ctypes.c_int(n)]
            argv = (ctypes.c_void_p * 2)(*[ctypes.addressof(a) for a in slots])
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            rc = driver.cuLaunchKernel(
                func,
                SM,
                1,
                1,
                512,
                1,
                1,
                0,
                ctypes.c_void_p(torch.cuda.current_stream().cuda_stream),
                argv,
                None,
            )
            end.record()
            torch.cuda.synchronize()
            assert rc == 0, rc
            times.append(start.elapsed_time(end) * 1e3)
        print(
            f"barrier {b}: {(times[3] - times[2]) / 1000:.2f} us each (launches of 0 / 1000: "
            f"{times[2]:.1f} / {times[3]:.1f} us)",
            flush=True,
        )


def swap(text: str, swaps) -> str:
    for old, new in swaps:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def zeros_selected(text: str) -> str:
    """q4_mma.cu giving lanes past the last activation row zeros (a select per register), as
    the first form of the 16-byte loads did."""
    none = "    const uint4 none = make_uint4(0u, 0u, 0u, 0u);\n"
    return swap(text, [
        ("    const u32* xrow[NT];\n", "    const u32* xrow[NT];\n    bool xok[NT];\n" + none),
        (
            "for (int nt = 0; nt < NT; ++nt) xrow[nt] =",
            "for (int nt = 0; nt < NT; ++nt) xok[nt] = 8 * nt + g < M, xrow[nt] =",
        ),
        (
            "const uint4 b0 = load_x(xrow[nt] + 32 * i), b1 = load_x(xrow[nt] + 32 * i + 16);",
            "const uint4 b0 = xok[nt] ? load_x(xrow[nt] + 32 * i) : none;\n"
            "const uint4 b1 = xok[nt] ? load_x(xrow[nt] + 32 * i + 16) : none;",
        ),
    ])  # fmt: skip


def eight_loads(text: str) -> str:
    """q4_mma.cu reading each iteration's activations as the fifteenth session's kernel did,
    eight 4-byte loads at words t + 4 m (the natural column order), zeros selected. On weights
    packed in today's order its outputs are wrong: for timing the change only."""
    return swap(zeros_selected(text), [
        (
            "__device__ __forceinline__ uint4 load_x(const u32* p) {\n",
            "__device__ __forceinline__ u32 load_x1(const u32* p) {\n    u32 v;\n"
            '    asm("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(p));\n    return v;\n}\n'
            "__device__ __forceinline__ uint4 load_x(const u32* p) {\n",
        ),
        ("(K >> 1) + 4 * t;", "(K >> 1) + t;"),
        (
            "const uint4 b0 = xok[nt] ? load_x(xrow[nt] + 32 * i) : none;",
            "const uint4 b0 = xok[nt] ? make_uint4(load_x1(xrow[nt] + 32 * i),"
            " load_x1(xrow[nt] + 32 * i + 4), load_x1(xrow[nt] + 32 * i + 8),"
            " load_x1(xrow[nt] + 32 * i + 12)) : none;",
        ),
        (
            "const uint4 b1 = xok[nt] ? load_x(xrow[nt] + 32 * i + 16) : none;",
            "const uint4 b1 = xok[nt] ? make_uint4(load_x1(xrow[nt] + 32 * i + 16),"
            " load_x1(xrow[nt] + 32 * i + 20), load_x1(xrow[nt] + 32 * i + 24),"
            " load_x1(xrow[nt] + 32 * i + 28)) : none;",
        ),
    ])  # fmt: skip


def undecoded(text: str) -> str:
    """q4_mma.cu with the nibbles fed to the mma as they are (no LOP3 + FMA a pair): wrong
    outputs, for timing what the decoding costs."""
    old = "__device__ __forceinline__ u32 weights_pair(u32 w) {\n    u32 r;\n"
    assert text.count(old) == 1
    return text.replace(old, old.replace("u32 r;", "return w;\n    u32 r;"))


def unloaded(text: str) -> str:
    """q4_mma.cu with constant activations instead of their loads: wrong outputs, for timing
    what reading x costs."""
    old = "__device__ __forceinline__ uint4 load_x(const u32* p) {\n    uint4 v;\n"
    assert text.count(old) == 1
    one = "make_uint4(0x3F803F80u, 0x3F803F80u, 0x3F803F80u, 0x3F803F80u)"
    return text.replace(old, old.replace("uint4 v;", f"return {one};\n    uint4 v;"))


# The landed kernel's source, edited: (label, edit), timed after it in every chain.
PROBES = [
    ("before: eight 4-byte activation loads (wrong outputs here, time only)", eight_loads),
    ("16-byte loads, zeros selected past the last row", zeros_selected),
    ("landed, nibbles not decoded (wrong outputs, time only)", undecoded),
    ("landed, activations not loaded (wrong outputs, time only)", unloaded),
    ("landed, neither", lambda text: unloaded(undecoded(text))),
]


def graph_time_us(fn) -> float:
    """us a call: the median of --reps replays of a CUDA graph of --calls calls."""
    return tune_q4.graph_time_us(fn, calls=args.calls, reps=args.reps)


def main() -> None:
    from torch.cuda._utils import _cuda_load_module

    major, minor = torch.cuda.get_device_capability(DEV)
    names = [f"chain_w{w}_p{p}_b{b}" for w, p, b in VARIANTS] + ["barriers_b1", "barriers_b2"]
    started = time.perf_counter()
    module = _cuda_load_module(mma_q4.nvrtc_cubin(source(), f"sm_{major}{minor}"), names)
    loaded = module if isinstance(module, dict) else {n: getattr(module, n) for n in names}
    kernels = {v: loaded[n] for v, n in zip(VARIANTS, names[: len(VARIANTS)], strict=True)}
    print(
        f"{torch.cuda.get_device_name(DEV)}, {SM} SMs; compiled in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    barrier_cost(loaded)
    probes = [("landed", LANDED_SOURCE)]
    for i, (label, edit) in enumerate(PROBES):
        path = Path(f"/tmp/q4_mma_probe{i}.cu")
        path.write_text(edit(LANDED_SOURCE.read_text()))
        probes.append((label, path))
    run("decoder + head", DEC, args.layers or 26, True, 1, kernels, probes)
    run("encoder", ENC, args.layers or 32, False, 4, kernels, probes)
    # What each matmul costs beyond its bytes: the same chain of 104 over matrices of a few KB.
    tiny = [(128, 64), (64, 64), (128, 64), (64, 64)]
    run("fixed cost: tiny matrices", tiny, 26, False, 1, kernels, probes)


def compile_only() -> None:
    lib = ctypes.CDLL(os.environ["VOXTRAL_NVRTC"]) if "VOXTRAL_NVRTC" in os.environ else None
    started = time.perf_counter()
    cubin = mma_q4.nvrtc_cubin(source(), "sm_90", library=lib)
    pairs = [(4, 1, 2, False), (16, 1, 2, True), (8, 1, 2, False)]
    wrappers = "\n".join("extern" + w for w in mma_q4._source(pairs).split("\nextern")[1:])
    for _, edit in PROBES:
        mma_q4.nvrtc_cubin(edit(LANDED_SOURCE.read_text()) + "\n" + wrappers, "sm_90", library=lib)
    seconds = time.perf_counter() - started
    print(
        f"compiled {len(VARIANTS)} variants and the probes for sm_90: {len(cubin)} bytes in {seconds:.1f} s"
    )


if args.compile_only:
    compile_only()
else:
    main()
