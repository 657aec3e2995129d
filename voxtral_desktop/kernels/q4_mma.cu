// Q4_0 x bf16 for a few activation rows on tensor cores (sm_80+), compiled at run time by NVRTC
// (torch.cuda._utils, see mma_q4.py): no compiler on the user's machine, no build step.
//
// Layout (made by mma_q4.pack, lossless): the weight is cut into tiles of 16 rows; each tile
// into iterations of 64 input columns. For one (tile, iteration) a warp loads 512 bytes, 16 per
// lane, in exactly the order of the A operand of mma.m16n8k16: lane l = 4 g + t holds, for each
// of the 4 k-steps j, one 32-bit word whose 8 nibbles are (bits 4p..4p+3, p = 0..7)
//   row g + 8 (p & 1), column 32 (j >> 1) + 8 t + 4 (j & 1) + 2 ((p >> 1) & 1) + (p >> 2).
// So `(w >> 4h) & 0x000F000F | 0x43004300` is a pair of bf16 128 + q, and one bf16x2 FMA makes
// the exact weights q - 8 (A register h of the fragment). The f16 scales d of the tile's 16 rows
// for the iteration's two 32-column groups follow as 8 x 4 halves: (g, g0), (g, g1), (g+8, g0),
// (g+8, g1). Products are summed in fp32 per 32-column group, then scaled by d in fp32, so the
// weight is never rounded: the only roundings are bf16 activations and the bf16 output.
//
// The mma sums over its 16 k slots whatever columns they hold, so the columns are placed for
// the B operand: lane t's slots in k-steps 0-1 are columns 8t..8t+7 of the iteration's first
// 32 (one Q4_0 block), in k-steps 2-3 the same of the second, so each lane reads its
// activations as two 16-byte loads. (In the natural order, column 16 j + k, they took eight
// 4-byte loads, and the decoder's chained matmuls streamed 1.68 TB/s against 2.36 TB/s with
// constant activations: bench/persistent_chain.py.)
//
// The asm in the loop is not volatile (loads of data no kernel writes meanwhile, arithmetic),
// so the compiler may schedule the activation loads ahead of earlier tensor-core work. Only the
// first weight loads and the wait for the previous kernel (programmatic dependent launch) are
// volatile, which keeps them in that order.
//
// Template parameters: WARPS warps split a tile's iterations; NT n-tiles of 8 activation rows
// each (M <= 8 NT per launch); U iterations loaded into registers before any is used, or (U = 0,
// "staged") all of a warp's iterations copied into shared memory before the wait and the
// activation rows after it (on the H200 the encoder's wo and w2 gained from that, 44 us a step;
// the others lost: bench/RESULTS.md, twenty-first session);
// GATED: the matrix is SwiGLU's gate/up pair with rows interleaved by 8 and the output is
// silu(gate) * up (computed in the epilogue; computing it on the way into w2 instead, as the
// Triton GEMV does, made w2 2x slower here: session 6). The loader (mma_q4.py) appends one
// extern "C" kernel per variant and compiles each on its first use.

typedef unsigned int u32;
typedef unsigned short u16;

// PINNED: volatile, so the load stays before `after_previous_kernel` (volatile asm keeps its
// order); the loop's loads are free to move.
template <bool PINNED>
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    if (PINNED)
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    else
        asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
            : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

template <bool PINNED>
__device__ __forceinline__ uint2 load_scales(const uint2* p) {
    uint2 v;
    if (PINNED)
        asm volatile("ld.global.nc.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    else
        asm("ld.global.nc.v2.u32 {%0,%1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

// Programmatic dependent launch (sm_90+, where mma_q4.py launches with the attribute; see
// kernels/pdl.py): returns `x` once the kernel before this one has finished and its writes are
// visible, then lets the next kernel launch. The activations are read through the returned
// pointer, so no load of them can be scheduled before the wait; the memory clobber keeps the
// output stores and the bias loads after it (neither pointer is __restrict__, which would let
// the compiler assume the asm leaves their memory alone; a bias may be a temporary the kernel
// before just wrote). Without the attribute the wait returns at once.
__device__ __forceinline__ const u32* after_previous_kernel(const u32* x) {
    const u32* ready;
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n\tmov.b64 %0, %1;" : "=l"(ready) : "l"(x) : "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#else
    asm volatile("mov.b64 %0, %1;" : "=l"(ready) : "l"(x) : "memory");
#endif
    return ready;
}

// 4 bytes global -> shared without passing through registers (sm_80+); wait with cp.async.wait_all.
__device__ __forceinline__ void copy_async4(float* shared, const float* global) {
    const unsigned to = (unsigned)__cvta_generic_to_shared(shared);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(to), "l"(global) : "memory");
}

// 16 bytes global -> shared (both 16-byte aligned), the same way.
__device__ __forceinline__ void copy_async16(void* shared, const void* global) {
    const unsigned to = (unsigned)__cvta_generic_to_shared(shared);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(to), "l"(global) : "memory");
}

// 8 bf16 activations (the lane's columns of one 32-column group), 16-byte aligned.
__device__ __forceinline__ uint4 load_x(const u32* p) {
    uint4 v;
    asm("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}

// (w & 0x000F000F) | 0x43004300 -> bf16x2 (128 + q), then (128 + q) * 1 - 136 = q - 8, exact.
__device__ __forceinline__ u32 weights_pair(u32 w) {
    u32 r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(w), "r"(0x000F000Fu), "r"(0x43004300u));
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(r), "r"(0x3F803F80u), "r"(0xC308C308u));
    return r;
}

__device__ __forceinline__ void mma(float* d, u32 w, u32 b0, u32 b1, const float* c) {
    const u32 a0 = weights_pair(w), a1 = weights_pair(w >> 4);
    const u32 a2 = weights_pair(w >> 8), a3 = weights_pair(w >> 12);
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1),
          "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ float half_to_float(u32 h) {
    float f;
    asm("{ .reg .b16 lo; cvt.u16.u32 lo, %1; cvt.f32.f16 %0, lo; }" : "=f"(f) : "r"(h));
    return f;
}

__device__ __forceinline__ float bf16_to_float(u16 h) {
    return __int_as_float(((u32)h) << 16);
}

__device__ __forceinline__ u16 float_to_bf16(float f) {
    u16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

// One iteration's two 32-column groups for one n-tile of activations (b0: the first group's
// columns, b1: the second's): p and q, each summed over its two k-steps in fp32, not yet scaled.
__device__ __forceinline__ void group_sums(float (&p)[4], float (&q)[4], uint4 c, uint4 b0, uint4 b1) {
    const float zero[4] = {0.f, 0.f, 0.f, 0.f};
    mma(p, c.x, b0.x, b0.y, zero);
    mma(p, c.y, b0.z, b0.w, p);
    mma(q, c.z, b1.x, b1.y, zero);
    mma(q, c.w, b1.z, b1.w, q);
}

// One iteration (64 input columns) of the tile for every n-tile, from the activation rows staged
// in shared memory: each group's sums scaled by that group's d and added.
template <int NT>
__device__ __forceinline__ void accumulate_staged(float (&acc)[NT][4], uint4 c, uint2 s, const u32* const (&xrow)[NT],
                                                  int i) {
    const float d0 = half_to_float(s.x & 0xFFFF), d1 = half_to_float(s.y & 0xFFFF);
    const float e0 = half_to_float(s.x >> 16), e1 = half_to_float(s.y >> 16);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        float p[4], q[4];
        group_sums(p, q, c, *(const uint4*)(xrow[nt] + 32 * i), *(const uint4*)(xrow[nt] + 32 * i + 16));
        acc[nt][0] += d0 * p[0] + e0 * q[0];
        acc[nt][1] += d0 * p[1] + e0 * q[1];
        acc[nt][2] += d1 * p[2] + e1 * q[2];
        acc[nt][3] += d1 * p[3] + e1 * q[3];
    }
}

// The same from global memory for the register loop: the activations at `at` words past the
// running row pointers (a constant after unrolling: an immediate offset of the loads), and each
// group's product added to the accumulator by two FMAs (acc + d0 p, then + e0 q).
template <int NT>
__device__ __forceinline__ void accumulate_at(float (&acc)[NT][4], uint4 c, uint2 s, const u32* const (&xp)[NT],
                                              int at) {
    const float d0 = half_to_float(s.x & 0xFFFF), d1 = half_to_float(s.y & 0xFFFF);
    const float e0 = half_to_float(s.x >> 16), e1 = half_to_float(s.y >> 16);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        float p[4], q[4];
        group_sums(p, q, c, load_x(xp[nt] + at), load_x(xp[nt] + at + 16));
        acc[nt][0] = fmaf(e0, q[0], fmaf(d0, p[0], acc[nt][0]));
        acc[nt][1] = fmaf(e0, q[1], fmaf(d0, p[1], acc[nt][1]));
        acc[nt][2] = fmaf(e1, q[2], fmaf(d1, p[2], acc[nt][2]));
        acc[nt][3] = fmaf(e1, q[3], fmaf(d1, p[3], acc[nt][3]));
    }
}

// y[m, n] = sum_k x[m, k] w[n, k] (+ bias[n]: bias_kind 0 none, 1 bf16, 2 fp32) for
// m < M <= 8 NT; one block per 16-row tile.
// Output row r (0..15) of the tile for activation row m: the sum of the warps' partial tiles
// part[WARPS][NT * 4][32] (D fragment: (c0, c1) = row g, activation rows 2t, 2t+1; (c2, c3) =
// row g + 8), plus the bias.
template <int WARPS, int NT>
__device__ __forceinline__ float tile_sum(const float* part, int r, int m, int tile, const void* bias,
                                         int bias_kind, float row_scale = 1.f) {
    const int src = (r & 7) * 4 + ((m & 7) >> 1), ci = (m >> 3) * 4 + (r >> 3) * 2 + (m & 1);
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) sum += part[(w * NT * 4 + ci) * 32 + src];
    sum *= row_scale;
    const int n = tile * 16 + r;
    if (bias_kind == 1) sum += bf16_to_float(((const u16*)bias)[n]);
    else if (bias_kind == 2) sum += ((const float*)bias)[n];
    return sum;
}

// RMS norms between matmuls, in their epilogues (template parameter NORM; mma_q4.py and
// kernels/norm_link.py), so no norm kernel runs between them and nothing waits before a block's
// loop (what they read is copied to shared memory by cp.async under the loop):
// - NORM_OUT (a matmul that ends a residual branch: wo, w2): its output r (rounded to bf16 as
//   always) is added to the residual res [M, N] (rounded: the new residual, stored to res_out);
//   y gets bf16(new residual * gamma[n]) (gamma: the next norm's weight, bf16, as stored),
//   and part_out[m * tiles + tile] the sum of squares of the block's 16 new residual entries;
// - NORM_IN (the next matmul: wqkv, w1/w3, the head): x is such a product, and every output is
//   scaled by rsqrt(mean of squares + eps) of its row, the mean from part_in [M, K / 16]
//   (copied after the wait, summed in a fixed order: every block gets the same scale).
// The model links w2 (NORM_OUT) to the next layer's wqkv (NORM_IN) only: on the H200 the gated
// w1/w3 pair lost 5.6 us a launch with NORM_IN (4 warps, 1,152 tiles), more than the norm kernel
// it saves. About 2 us of it is ptxas issuing that variant's activation loads one after another
// (nvdisasm); tied together, the best NORM_IN variant still lost 2.7 us a launch to the best plain
// one (bench/RESULTS.md, twentieth and twenty-first sessions).
// rms_norm(x) * gamma @ W^T = rsqrt(mean x^2 + eps) * ((x * gamma) @ W^T), so what changes is
// where the bf16 rounding falls: on x * gamma instead of x * rsqrt * gamma.
#define NORM_OUT 1
#define NORM_IN 2

// bench/step_timeline.py only (Q4_TIMELINE is never defined in the app): thread 0 of every block
// notes the global timer (ns) and its SM's clock when the block starts, when the wait for the
// previous kernel returns, when its loop ends and when it is done (in shared memory: no registers
// held across the loop), and appends them as one record of 8 words to the buffer whose device
// address Q4_TIMELINE is (word 0 counts the records, which start at word 8).
#ifdef Q4_TIMELINE
__device__ __forceinline__ unsigned long long timer_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ unsigned long long timer_clock() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%clock64;" : "=l"(t));
    return t;
}
#define TIMELINE_MARK(i)                                  \
    if (threadIdx.x == 0) {                               \
        tl[i] = timer_ns();                               \
        tl[4 + i] = timer_clock();                        \
    }
#else
#define TIMELINE_MARK(i)
#endif

template <int WARPS, int NT, int U, bool GATED, int NORM>
__device__ __forceinline__ void q4_mma(const uint4* __restrict__ codes, const uint2* __restrict__ scales,
                                       const u32* x, const void* bias,
                                       int bias_kind, u16* __restrict__ y, int M, int N, int K,
                                       const u16* res, u16* res_out, const u16* gamma, float* part_out,
                                       const float* part_in, float eps) {
    static_assert(!(GATED && NORM == NORM_OUT), "a SwiGLU pair never ends a residual branch");
#ifdef Q4_TIMELINE
    __shared__ unsigned long long tl[8];  // in shared memory: no registers held across the loop
#endif
    TIMELINE_MARK(0)
    const int tile = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int iters = K >> 6;
    const uint4* c_tile = codes + (size_t)tile * iters * 32 + lane;
    const uint2* s_tile = scales + (size_t)tile * iters * 8 + g;
    // U >= 1: this warp's first U iterations of weights are loaded into registers before waiting
    // for the previous kernel (they need nothing from it); each pass of the loop uses U and loads
    // the next U. U == 0 (STAGED): all of the warp's iterations are copied into shared memory by
    // cp.async before the wait, so every weight byte of the block is in flight at once, and the
    // activation rows after the wait; the loop then reads shared memory only (dynamic shared
    // memory after NORM_IN's partial sums: WARPS x ceil(iters / WARPS) x (512 + 64) bytes of
    // weights, then M x K bf16; mma_q4.staged_shared_bytes).
    constexpr bool STAGED = U == 0;
    constexpr int UR = STAGED ? 1 : U;
    constexpr int PMAX = 192;
    constexpr bool EARLY = NORM == NORM_IN && NT == 1;
    const int P = K >> 4;
    extern __shared__ __align__(16) float pin[];  // M * P floats where `early`, then the stage
    const bool early = EARLY && P <= PMAX;
    const int per_warp = (iters + WARPS - 1) / WARPS;
    uint4* staged_codes = (uint4*)(pin + (early ? M * P : 0)) + (size_t)warp * per_warp * 36;
    uint2* staged_scales = (uint2*)(staged_codes + per_warp * 32);
    uint4 c[UR];
    uint2 s[UR];
    if (STAGED) {
        const uint4* s_all = (const uint4*)(scales + (size_t)tile * iters * 8);
        for (int i = warp, j = 0; i < iters; i += WARPS, ++j) {
            copy_async16(&staged_codes[j * 32 + lane], c_tile + (size_t)i * 32);
            if (lane < 4) copy_async16((uint4*)(staged_scales + j * 8) + lane, s_all + (size_t)i * 4 + lane);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    } else {
#pragma unroll
        for (int u = 0; u < UR; ++u) {
            const int i = warp + u * WARPS;
            if (i < iters) {
                c[u] = load_stream<true>(c_tile + (size_t)i * 32);
                s[u] = load_scales<true>(s_tile + (size_t)i * 8);
            }
        }
    }
    x = after_previous_kernel(x);
    TIMELINE_MARK(1)
    // NORM_IN: the partial sums of squares of the rows, copied now into shared memory by
    // cp.async where they fit (at most 8 rows of K <= 16 * PMAX: the streaming step's), so the
    // copies overlap the loop and hold no registers across it. Held in registers, they took the
    // 16-warp kernel from 40 to 61 registers: 2 blocks an SM instead of 3, and 1.7 us a launch
    // slower on the H200. The buffer is dynamic shared memory of the rows' size.
    // NORM_OUT: the tile's residual entries and gamma, copied the same way.
    if (early) {
        for (int e = threadIdx.x; e < M * P; e += WARPS * 32) copy_async4(&pin[e], part_in + e);
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    __shared__ __align__(16) u16 res_tile[NORM == NORM_OUT ? NT * 8 * 16 : 8];
    __shared__ __align__(16) u16 gamma_tile[16];
    if (NORM == NORM_OUT) {
        // 16-byte copies: two per row of the tile's 16 residual entries, two for gamma's 16
        for (int e = threadIdx.x; e < 2 * M + 2; e += WARPS * 32) {
            if (e < 2 * M) copy_async16(&res_tile[e * 8], res + (size_t)(e >> 1) * N + tile * 16 + (e & 1) * 8);
            else copy_async16(&gamma_tile[(e - 2 * M) * 8], gamma + tile * 16 + (e - 2 * M) * 8);
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    }
    // B operand: activation row 8 nt + g; b0, b1 of k-step j are words 4 t + 2 (j & 1), + 1 of
    // the iteration's 32-column group j >> 1 (see the layout above). Lanes past the last row read
    // row 0 (the same addresses as its lanes: no extra traffic) instead of selecting zeros: a
    // column of D depends on its own column of B only, and columns past M are never stored.
    const u32* xrow[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) xrow[nt] = x + (size_t)(8 * nt + g < M ? 8 * nt + g : 0) * (K >> 1) + 4 * t;
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;

    if (STAGED) {
        // the activation rows follow the warps' weights in shared memory, copied once for the
        // block after the wait (read from global memory in the loop instead, an L1/L2 round
        // trip an iteration, the staged form lost to registers on all but one matrix)
        u32* xs = (u32*)(pin + (early ? M * P : 0)) + (size_t)WARPS * per_warp * 36 * 4;
        for (int e = threadIdx.x; e < M * (K >> 3); e += WARPS * 32) copy_async16(xs + 4 * e, x + 4 * e);
        asm volatile("cp.async.commit_group;" ::: "memory");
        asm volatile("cp.async.wait_all;" ::: "memory");
        __syncthreads();  // the rows and the scales were copied by other threads
        const u32* xsrow[NT];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) xsrow[nt] = xs + (size_t)(8 * nt + g < M ? 8 * nt + g : 0) * (K >> 1) + 4 * t;
        for (int j = 0; warp + j * WARPS < iters; ++j) {
            const uint4 cw = staged_codes[j * 32 + lane];
            const uint2 sw = staged_scales[j * 8 + g];
            accumulate_staged<NT>(acc, cw, sw, xsrow, warp + j * WARPS);
        }
    } else {
        // Running activation pointers, moved on once a pass, so the loads within a pass take
        // immediate offsets. Indexed by the iteration, their 64-bit addresses were recomputed
        // every iteration: about 18 of the ~100 SASS instructions an iteration at unroll 3, in a
        // loop bound by its instructions more than by its loads (bench/loop_bound.py; with the
        // two FMAs a group below, the step's replay 1,922 -> 1,881 us on the H200:
        // bench/RESULTS.md, twenty-eighth session). Full passes run unguarded; the last, partial
        // one after the loop.
        const u32* xp[NT];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) xp[nt] = xrow[nt] + 32 * warp;
        int base = warp;
#pragma unroll 1
        for (; base + (UR - 1) * WARPS < iters; base += WARPS * UR) {
#pragma unroll
            for (int u = 0; u < UR; ++u) {
#ifdef Q4_LOOP_NO_MATH  // bench/loop_bound.py only: the weights streamed, not used
                acc[0][0] += __int_as_float((c[u].x ^ c[u].y ^ c[u].z ^ c[u].w ^ s[u].x ^ s[u].y) & 0x3F);
#else
                accumulate_at<NT>(acc, c[u], s[u], xp, 32 * u * WARPS);
#endif
            }
#pragma unroll
            for (int u = 0; u < UR; ++u) {
                const int i = base + (UR + u) * WARPS;
                if (i < iters) {
#ifdef Q4_LOOP_NO_LOADS  // bench/loop_bound.py only: no weights streamed; the first ones changed
                    // by an add a word, so that their dequantisation stays in the loop
                    c[u] = make_uint4(c[u].x + 1, c[u].y + 1, c[u].z + 1, c[u].w + 1);
                    s[u] = make_uint2(s[u].x ^ 1, s[u].y ^ 1);
#else
                    c[u] = load_stream<false>(c_tile + (size_t)i * 32);
                    s[u] = load_scales<false>(s_tile + (size_t)i * 8);
#endif
                }
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) xp[nt] += 32 * WARPS * UR;
        }
#pragma unroll
        for (int u = 0; u < UR - 1; ++u) {
            if (base + u * WARPS < iters) {
#ifdef Q4_LOOP_NO_MATH
                acc[0][0] += __int_as_float((c[u].x ^ c[u].y ^ c[u].z ^ c[u].w ^ s[u].x ^ s[u].y) & 0x3F);
#else
                accumulate_at<NT>(acc, c[u], s[u], xp, 32 * u * WARPS);
#endif
            }
        }
    }

    TIMELINE_MARK(2)
    __shared__ float part[WARPS][NT * 4][32];
    __shared__ float row_scale[NT * 8];
    __shared__ float squares[NT * 8][16];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int ci = 0; ci < 4; ++ci) part[warp][nt * 4 + ci][lane] = acc[nt][ci];
    if (early || NORM == NORM_OUT) asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
    if (NORM == NORM_IN) {
        // every block sums a row's partials in the same order: the same scale in every tile
        for (int m = warp; m < M; m += WARPS) {
            float s = 0.f;
            for (int pp = lane; pp < P; pp += 32) s += early ? pin[m * P + pp] : part_in[(size_t)m * P + pp];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0) row_scale[m] = 1.f / sqrtf(s / (float)K + eps);
        }
        __syncthreads();
    }
    if (!GATED) {
        for (int o = threadIdx.x; o < 16 * M; o += WARPS * 32) {
            const int r = o & 15, m = o >> 4;
            const float scale = (NORM == NORM_IN) ? row_scale[m] : 1.f;
            const float sum = tile_sum<WARPS, NT>(&part[0][0][0], r, m, tile, bias, bias_kind, scale);
            const size_t at = (size_t)m * N + tile * 16 + r;
            if (NORM == NORM_OUT) {
                // the new residual, rounded, as `x = x + r` leaves it; then its product with the
                // next norm's weight for the next matmul, and its square for the norm's mean
                const float xn =
                    bf16_to_float(float_to_bf16(bf16_to_float(res_tile[o]) + bf16_to_float(float_to_bf16(sum))));
                res_out[at] = float_to_bf16(xn);
                y[at] = float_to_bf16(xn * bf16_to_float(gamma_tile[r]));
                squares[m][r] = xn * xn;
            } else {
                y[at] = float_to_bf16(sum);
            }
        }
        if (NORM == NORM_OUT) {
            __syncthreads();
            for (int m = threadIdx.x; m < M; m += WARPS * 32) {
                float s = 0.f;
#pragma unroll
                for (int r = 0; r < 16; ++r) s += squares[m][r];
                part_out[(size_t)m * (N >> 4) + tile] = s;
            }
        }
    } else {
        // SwiGLU's gate/up pair packed with its rows interleaved by 8 (gate rows j..j+7, then up
        // rows j..j+7, in every tile): output column tile * 8 + r = silu(gate) * up, from gate
        // and up rounded to bf16 first, as the separate silu_mul kernel sees them.
        for (int o = threadIdx.x; o < 8 * M; o += WARPS * 32) {
            const int r = o & 7, m = o >> 3;
            const float* p = &part[0][0][0];
            const float scale = (NORM == NORM_IN) ? row_scale[m] : 1.f;
            const float gate =
                bf16_to_float(float_to_bf16(tile_sum<WARPS, NT>(p, r, m, tile, bias, bias_kind, scale)));
            const float up =
                bf16_to_float(float_to_bf16(tile_sum<WARPS, NT>(p, r + 8, m, tile, bias, bias_kind, scale)));
            y[(size_t)m * (N >> 1) + tile * 8 + r] = float_to_bf16(gate / (1.f + expf(-gate)) * up);
        }
    }
#ifdef Q4_TIMELINE
    TIMELINE_MARK(3)
    if (threadIdx.x == 0) {
        unsigned long long* buf = (unsigned long long*)Q4_TIMELINE;
        unsigned long long at;
        asm volatile("atom.global.add.u64 %0, [%1], 1;" : "=l"(at) : "l"(buf));
        unsigned long long* rec = buf + 8 + 8 * at;
        unsigned smid;
        asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
        for (int i = 0; i < 4; ++i) rec[i] = tl[i];
        rec[4] = (unsigned long long)codes;
        rec[5] = ((unsigned long long)N << 32) | (unsigned)K;
        rec[6] = ((unsigned long long)smid << 32) | ((unsigned)WARPS << 24) | blockIdx.x;
        rec[7] = (tl[5] - tl[4]) | ((tl[6] - tl[5]) << 21) | ((tl[7] - tl[6]) << 42);
    }
#endif
}
