// A chain of Q4_0 matmuls for a few activation rows in ONE persistent kernel (an experiment for
// bench/persistent_chain.py; appended to voxtral_desktop/kernels/q4_mma.cu, whose loaders, weight
// decoding and mma it uses). The landed step launches one kernel per matmul; each pays its
// launch and the first DRAM round trip of its blocks, and the weight stream stops between them.
// Here every SM stays resident for the whole chain: a warp's share of the next matmul's weights
// is loaded into registers BEFORE the grid barrier that waits for the current matmul's output,
// so the weight stream runs on while the barrier settles.
//
// Work: matmul `op` has T = N/16 tiles of I = K/64 iterations; the T*I (tile, iteration) units
// lie contiguously in the packed layout (codes[unit][32 lanes], scales[unit][8]), and warp w of
// the grid takes units [w*T*I/W, (w+1)*T*I/W). A warp's units span one or a few tiles; at each
// tile change it adds its partial tile to the fp32 output with `red.add` (so the sum's order is
// not fixed, unlike the landed kernel's). The next matmul reads that fp32 output, rounded to
// bf16 as the landed kernel's output is; a gated output (gate/up rows interleaved by 8) is read
// as silu(bf16 gate) * bf16 up.

struct ChainOp {
    const uint4* codes;
    const uint2* scales;
    const float* x;  // fp32 [M, x_stride]: K values a row (2K gate/up pairs when gated_input)
    float* y;        // fp32 [M, N], zeroed at the kernel's start
    long long n, k, gated_input, x_stride;
};

struct GridBarrier {
    unsigned count;
    unsigned generation;
    unsigned long long arrivals;  // BAR 2: every arrival ever (64 bits: never wraps)
};

// Every block arrives; the last one resets the count and bumps the generation, the others spin
// on it. Fences make the blocks' red.adds visible before the count moves, and the reads after.
__device__ __forceinline__ void grid_barrier(GridBarrier* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned gen;
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(gen) : "l"(&bar->generation) : "memory");
        __threadfence();
        const unsigned arrived = atomicAdd(&bar->count, 1u);
        if (arrived == gridDim.x - 1) {
            atomicExch(&bar->count, 0u);
            __threadfence();
            asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(&bar->generation), "r"(gen + 1) : "memory");
        } else {
            unsigned now;
            do {
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(now) : "l"(&bar->generation) : "memory");
            } while (now == gen);
        }
        __threadfence();
    }
    __syncthreads();
}

// BAR 2: one release-add per block on a counter that only grows, and acquire loads until the
// count reaches this barrier's multiple of the grid: no reset, no sequentially consistent fence.
__device__ __forceinline__ void grid_barrier_monotonic(GridBarrier* bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long old, now;
        asm volatile("atom.add.release.gpu.global.u64 %0, [%1], 1;" : "=l"(old) : "l"(&bar->arrivals) : "memory");
        const unsigned long long target = (old / gridDim.x + 1) * gridDim.x;
        do {
            asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(now) : "l"(&bar->arrivals) : "memory");
        } while (now < target);
    }
    __syncthreads();
}

template <int BAR>
__device__ __forceinline__ void sync_grid(GridBarrier* bar) {
    if (BAR == 1) grid_barrier(bar);
    else grid_barrier_monotonic(bar);
}

// The pointer, after everything before it (volatile, memory clobber): loads through it cannot be
// hoisted above a barrier.
__device__ __forceinline__ const float* after_barrier(const float* p) {
    const float* r;
    asm volatile("mov.b64 %0, %1;" : "=l"(r) : "l"(p) : "memory");
    return r;
}

__device__ __forceinline__ float2 load_act(const float* p) {
    float2 v;
    asm("ld.global.cg.v2.f32 {%0,%1}, [%2];" : "=f"(v.x), "=f"(v.y) : "l"(p));
    return v;
}

__device__ __forceinline__ u32 pack_bf16x2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// Activation row m, columns c and c + 1, as a bf16 pair.
__device__ __forceinline__ u32 act_pair(const float* x, int m, int c, long long stride, bool gated) {
    if (!gated) {
        const float2 v = load_act(x + (size_t)m * stride + c);
        return pack_bf16x2(v.x, v.y);
    }
    const float* row = x + (size_t)m * stride + (c >> 3) * 16 + (c & 7);
    const float2 g = load_act(row), u = load_act(row + 8);
    const float g0 = round_bf16(g.x), g1 = round_bf16(g.y);
    return pack_bf16x2(g0 / (1.f + expf(-g0)) * round_bf16(u.x), g1 / (1.f + expf(-g1)) * round_bf16(u.y));
}

__device__ __forceinline__ void flush(float* acc, float* y, int tile, int M, long long n, int g, int t) {
    // D fragment: (acc0, acc1) = tile row g, activation rows 2t, 2t+1; (acc2, acc3) = row g + 8.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int m = 2 * t + h;
        if (m < M) {
            atomicAdd(y + (size_t)m * n + tile * 16 + g, acc[h]);
            atomicAdd(y + (size_t)m * n + tile * 16 + g + 8, acc[2 + h]);
        }
    }
    acc[0] = acc[1] = acc[2] = acc[3] = 0.f;
}

template <int WARPS>
__device__ __forceinline__ void unit_range(const ChainOp& op, long long& first, long long& end) {
    const long long units = (op.n >> 4) * (op.k >> 6);
    const long long warps = (long long)gridDim.x * WARPS;
    const long long w = (long long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    first = w * units / warps;
    end = (w + 1) * units / warps;
}

// This warp's first P units of `op`: loaded pinned (volatile), so before the barrier that follows.
template <int WARPS, int P>
__device__ __forceinline__ void prefetch(const ChainOp& op, uint4* c, uint2* s, int lane, int g) {
    long long first, end;
    unit_range<WARPS>(op, first, end);
#pragma unroll
    for (int u = 0; u < P; ++u) {
        if (first + u < end) {
            c[u] = load_stream<true>(op.codes + (size_t)(first + u) * 32 + lane);
            s[u] = load_scales<true>(op.scales + (size_t)(first + u) * 8 + g);
        }
    }
}

template <int WARPS, int P, int BAR>
__device__ __forceinline__ void chain(const ChainOp* ops, int n_ops, int M, GridBarrier* bar, float* zero,
                                      long long zero_count) {
    extern __shared__ u32 xs[];
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint4 c[P];
    uint2 s[P];
    prefetch<WARPS, P>(ops[0], c, s, lane, g);
    // Zero every output (they are accumulated with red.add), then wait for all blocks.
    float4* z = (float4*)zero;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (zero_count >> 2);
         i += (long long)gridDim.x * blockDim.x)
        z[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    sync_grid<BAR>(bar);
    const float zf[4] = {0.f, 0.f, 0.f, 0.f};
    for (int o = 0; o < n_ops; ++o) {
        const ChainOp op = ops[o];
        const bool gated = op.gated_input != 0;
        const float* x = after_barrier(op.x);
        // The block's copy of the input, bf16 pairs with rows padded by 4 words (no bank
        // conflicts between the B fragment's rows): every warp reads it many times.
        const int half = (int)(op.k >> 1), stride = half + 4;
#pragma unroll 4
        for (int i = threadIdx.x; i < M * half; i += blockDim.x) {
            const int m = i / half, c = i - m * half;
            xs[m * stride + c] = act_pair(x, m, 2 * c, op.x_stride, gated);
        }
        __syncthreads();
        const u32* xrow = xs + (g < M ? g : 0) * stride + 4 * t;  // q4_mma.cu's B layout
        const int iters = (int)(op.k >> 6);
        long long first, end;
        unit_range<WARPS>(op, first, end);
        int tile = (int)(first / iters), iter = (int)(first % iters);
        const bool xok = g < M;
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        for (long long base = first; base < end; base += P) {
#pragma unroll
            for (int u = 0; u < P; ++u) {
                if (base + u < end) {
                    const uint4 none = make_uint4(0u, 0u, 0u, 0u);
                    const uint4 lo = xok ? *(const uint4*)(xrow + 32 * iter) : none;
                    const uint4 hi = xok ? *(const uint4*)(xrow + 32 * iter + 16) : none;
                    const u32 b[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
                    const float d0 = half_to_float(s[u].x & 0xFFFF), d1 = half_to_float(s[u].y & 0xFFFF);
                    const float e0 = half_to_float(s[u].x >> 16), e1 = half_to_float(s[u].y >> 16);
                    float p[4], q[4];
                    mma(p, c[u].x, b[0], b[1], zf);
                    mma(p, c[u].y, b[2], b[3], p);
                    mma(q, c[u].z, b[4], b[5], zf);
                    mma(q, c[u].w, b[6], b[7], q);
                    acc[0] += d0 * p[0] + e0 * q[0];
                    acc[1] += d0 * p[1] + e0 * q[1];
                    acc[2] += d1 * p[2] + e1 * q[2];
                    acc[3] += d1 * p[3] + e1 * q[3];
                    if (++iter == iters || base + u + 1 == end) {
                        flush(acc, op.y, tile, M, op.n, g, t);
                        ++tile;
                        iter = 0;
                    }
                }
                // The slot is free: refill it now, so P loads stay in flight all along.
                const long long next = base + P + u;
                if (next < end) {
                    c[u] = load_stream<false>(op.codes + (size_t)next * 32 + lane);
                    s[u] = load_scales<false>(op.scales + (size_t)next * 8 + g);
                }
            }
        }
        if (o + 1 < n_ops) {
            prefetch<WARPS, P>(ops[o + 1], c, s, lane, g);
            sync_grid<BAR>(bar);
        }
    }
}

// The barrier alone, n times (its cost per matmul in the chain).
template <int BAR>
__device__ __forceinline__ void barriers(GridBarrier* bar, int n) {
    for (int i = 0; i < n; ++i) sync_grid<BAR>(bar);
}
