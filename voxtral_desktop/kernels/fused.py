"""Triton fusions of the small per-layer ops (CUDA only), with the plain torch path elsewhere.

A streaming step is ~58 layers of tiny ops (one token, or four encoder frames), so what it costs
is mostly the number of kernels, not their arithmetic. These kernels each replace a chain:

- `rms_norm`: the norm, its weight and an optional extra scale (the decoder's Ada scale) in one
  pass, statistics in fp32;
- `add_rms_norm`: residual add + the next norm (two outputs: the new residual and its norm);
- `rope_qkv_to_cache`: RoPE of q and k straight out of the fused qkv projection, q written in the
  [B, H, T, D] layout attention reads, k (rotated) and v written into the KV cache slots;
- `silu_mul`: SwiGLU's silu(gate) * up from the fused gate/up projection;
- `attention`: scores, mask, softmax and the weighted values with an online softmax, instead of
  baddbmm + softmax + bmm (cuBLAS picked a 34 us GEMV for the encoder's 1,005 keys): for a
  streaming step (<= 8 query rows per KV head) split among programs (flash decoding) and
  combined by a second kernel, or, for many streams, one program per stream and KV head with the
  keys as the mma's rows; for prompts and chunks in blocks of 64 query rows. It reads int8
  caches (kernels/kv_int8.py) as they are.

All arithmetic is fp32 (accurate libdevice exp/rsqrt where available), rounded once to the
output dtype, so the fp32 model stays exact. Triton is imported lazily; `enabled(x)` says whether
the fused path applies to a tensor (CUDA, Triton importable, not disabled by
VOXTRAL_NO_FUSED_KERNELS=1).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels import pdl
from voxtral_desktop.kernels.kv_int8 import LayerKV


@cache
def _available() -> bool:
    if os.environ.get("VOXTRAL_NO_FUSED_KERNELS", "") not in ("", "0"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


ENABLED = True  # a switch for comparisons (bench/profile_step.py); the env variable is the user's


def enabled(x: torch.Tensor) -> bool:
    return ENABLED and x.is_cuda and _available()


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# libdevice (or tl), bound by `_kernels`: a module global rather than a closure variable, so that
# Triton's interpreter, which runs the kernels' source with their module's globals, finds it too
# (tests/test_fused_attention_cpu.py).
fmath: Any = None


@cache
def math_functions() -> Any:
    """The math functions the Triton kernels call: libdevice's, accurate (the tl builtins are
    approximate), or tl's under the interpreter (numpy's; it has no libdevice)."""
    import triton.language as tl

    if os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        return tl
    try:
        from triton.language.extra import libdevice

        return libdevice
    except ImportError:
        return tl


@cache
def _kernels() -> Any:
    global fmath
    import triton
    import triton.language as tl

    fmath = math_functions()
    gdc_wait, gdc_launch_dependents = pdl.triton_gdc()

    @triton.jit
    def rms_norm_kernel(
        x_ptr, r_ptr, rb_ptr, w_ptr, s_ptr, y_ptr, xo_ptr, N, stride_x, stride_r, stride_y, stride_xo, eps,
        HAS_RES: tl.constexpr, HAS_RES_BIAS: tl.constexpr, HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr,
        PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        m = cols < N
        x = tl.load(x_ptr + row * stride_x + cols, mask=m, other=0.0).to(tl.float32)
        if HAS_RES:
            r = tl.load(r_ptr + row * stride_r + cols, mask=m, other=0.0).to(tl.float32)
            if HAS_RES_BIAS:  # the residual branch's bias, rounded in like a separate add
                rb = tl.load(rb_ptr + cols, mask=m, other=0.0).to(tl.float32)
                r = (r + rb).to(xo_ptr.dtype.element_ty).to(tl.float32)
            x = (x + r).to(xo_ptr.dtype.element_ty)
            tl.store(xo_ptr + row * stride_xo + cols, x, mask=m)
            x = x.to(tl.float32)
        ms = tl.sum(x * x, axis=0) / N
        y = x * fmath.rsqrt(ms + eps)
        w = tl.load(w_ptr + cols, mask=m, other=0.0).to(tl.float32)
        y = y * w
        if HAS_SCALE:
            s = tl.load(s_ptr + cols, mask=m, other=0.0).to(tl.float32)
            y = y * s
        tl.store(y_ptr + row * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def rope_cache_kernel(
        qkv_ptr, bias_ptr, rot_ptr, slot_ptr, q_ptr, kc_ptr, vc_ptr, ks_ptr, vs_ptr,
        T, H, HKV,
        s_qb, s_qt,
        s_kb, s_kh, s_ks,
        s_sb, s_sh,
        HALF: tl.constexpr, HB: tl.constexpr, TB: tl.constexpr, QUANT: tl.constexpr,
        HAS_BIAS: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        # TB positions x HB head vectors of one stream per program (q heads, then k, then v);
        # row r is position t0 + r // HB, head h0 + r % HB.
        b = tl.program_id(0)
        r = tl.arange(0, TB * HB)
        t = tl.program_id(1) * TB + r // HB
        head = tl.program_id(2) * HB + r % HB
        j = tl.arange(0, 2 * HALF)
        live = (head < H + 2 * HKV) & (t < T)
        src = qkv_ptr + b * s_qb + t[:, None] * s_qt + head[:, None] * (2 * HALF) + j[None, :]
        x = tl.load(src, mask=live[:, None], other=0.0)
        if HAS_BIAS:  # the projection's bias, rounded in like a separate add
            pb = tl.load(bias_ptr + head[:, None] * (2 * HALF) + j[None, :], mask=live[:, None], other=0.0)
            x = (x.to(tl.float32) + pb.to(tl.float32)).to(qkv_ptr.dtype.element_ty)
        # interleaved pairs (a, c) = (x[2i], x[2i+1]), split in registers (one load, not two)
        a, c = tl.split(tl.reshape(x.to(tl.float32), [TB * HB, HALF, 2]))
        i = tl.arange(0, HALF)
        rot = rot_ptr + t[:, None] * (2 * HALF) + i[None, :] * 2
        cos = tl.load(rot, mask=(t < T)[:, None], other=0.0)
        sin = tl.load(rot + 1, mask=(t < T)[:, None], other=0.0)
        # (a + ic)(cos + i sin) = (a cos - c sin) + i (a sin + c cos)
        rotated = tl.reshape(tl.join(a * cos - c * sin, a * sin + c * cos), [TB * HB, 2 * HALF])
        is_k = head < H + HKV
        y = tl.where(is_k[:, None], rotated, x.to(tl.float32))  # value heads are stored as they are
        # q [B, H, T, D] contiguous: the TB positions of a head are adjacent
        is_q = live & (head < H)
        q_dst = q_ptr + ((b * H + head[:, None]) * T + t[:, None]) * (2 * HALF) + j[None, :]
        tl.store(q_dst, y.to(q_ptr.dtype.element_ty), mask=is_q[:, None])
        # keys and values into their cache slot
        is_kv = live & (head >= H)
        slot = tl.load(slot_ptr + t, mask=t < T, other=0)
        kv_head = tl.where(is_k, head - H, head - H - HKV)
        b64 = b.to(tl.int64)  # big batches near 2^31 elements of cache (256 streams x 600 s: 1.97e9)
        off = b64 * s_kb + kv_head * s_kh + slot * s_ks
        dst = tl.where(is_k[:, None], kc_ptr + off[:, None], vc_ptr + off[:, None]) + j[None, :]
        if QUANT:  # int8 codes and one scale per vector (kernels/kv_int8.py)
            amax = tl.max(tl.abs(y), axis=1)
            inv = tl.where(amax > 0, 127.0 / amax, 0.0)
            tl.store(dst, fmath.rint(y * inv[:, None]).to(tl.int8), mask=is_kv[:, None])
            soff = b64 * s_sb + kv_head * s_sh + slot
            tl.store(tl.where(is_k, ks_ptr + soff, vs_ptr + soff), amax / 127.0, mask=is_kv)
        else:
            tl.store(dst, y.to(kc_ptr.dtype.element_ty), mask=is_kv[:, None])

    @triton.jit
    def silu_mul_kernel(
        gu_ptr, y_ptr, N, stride_gu, stride_y, BLOCK: tl.constexpr, GROUP: tl.constexpr, PDL: tl.constexpr
    ):
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        # GROUP 0: (gate | up) halves; else rows interleaved GROUP gate, GROUP up (linear.GATE_ROWS)
        row = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        m = cols < N
        if GROUP == 0:
            g_col = cols
            u_col = N + cols
        else:
            g_col = (cols // GROUP) * (2 * GROUP) + cols % GROUP
            u_col = g_col + GROUP
        g = tl.load(gu_ptr + row * stride_gu + g_col, mask=m, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + row * stride_gu + u_col, mask=m, other=0.0).to(tl.float32)
        y = g / (1.0 + fmath.exp(-g)) * u
        tl.store(y_ptr + row * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def attn_split_kernel(
        q_ptr, k_ptr, v_ptr, ks_ptr, vs_ptr, pos_ptr, held_ptr, valid_ptr, m_ptr, l_ptr, acc_ptr, out_ptr,
        S, R, T, WINDOW, HKV, NS, s_kb, s_kh, s_ks, s_sb, s_sh, scale,
        R_PAD: tl.constexpr, D: tl.constexpr, BS: tl.constexpr, RB: tl.constexpr,
        IEEE: tl.constexpr, QUANT: tl.constexpr, DIRECT: tl.constexpr, ONE_POS: tl.constexpr,
        PDL: tl.constexpr, BOUNDS: tl.constexpr, LOG2: tl.constexpr, FULL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        # One slice of the keys for RB query rows of one (stream, KV head): tensor-core dots
        # (rows padded to 16; exact fp32 FMA dots for fp32 inputs), online softmax in fp32.
        # QUANT: int8 keys/values with one scale per slot; the codes are exact in bf16, the
        # scales multiply the scores (keys) and the probabilities (values).
        # DIRECT (one slice: many rows, e.g. an encoder chunk): the normalised output is
        # written here and no combine kernel runs.
        # Visibility comes from positions (no [rows, keys] bias is read): row r = (group, t) is
        # the query at pos[t], slot s holds held[s] (< 0: empty), visible iff 0 <= pos - held <
        # WINDOW. (Skipping blocks nobody sees with an `if` in the loop was slower: bench/RESULTS.md.)
        # LOG2 (bf16/fp16): scores are kept in log2 units, scale * log2(e) folded into the one
        # multiply a score already has (with the key's scale when QUANT), so exp2 needs no other.
        # FULL (chunks): a block of keys that every row sees whole skips the visibility test.
        bh = tl.program_id(0)
        sp = tl.program_id(1)
        b = bh // HKV
        h = bh % HKV
        rows = tl.program_id(2) * RB + tl.arange(0, RB)
        d = tl.arange(0, D)
        rmask = rows < R
        q = tl.load(q_ptr + (bh * R + rows)[:, None] * D + d[None, :], mask=rmask[:, None], other=0.0)
        m = tl.full([RB], -1e30, tl.float32)
        l = tl.zeros([RB], tl.float32)
        acc = tl.zeros([RB, D], tl.float32)
        b64 = b.to(tl.int64)  # 64-bit cache offsets, as in rope_cache_kernel
        k_base = k_ptr + b64 * s_kb + h * s_kh
        v_base = v_ptr + b64 * s_kb + h * s_kh
        # Only the slots in use are read: the count comes from the device (CUDA graphs replay
        # one kernel for every cache fill), and the split of it among the NS programs too.
        n_valid = tl.minimum(tl.load(valid_ptr).to(tl.int32), S)
        split = tl.cdiv(tl.cdiv(n_valid, NS), BS) * BS
        start = sp * split
        end = tl.minimum(start + split, n_valid)
        if ONE_POS:  # one new position (a streaming step): every row sees the same keys
            qpos = tl.load(pos_ptr).to(tl.int32)
        else:
            qpos = tl.load(pos_ptr + rows % T, mask=rmask, other=0).to(tl.int32)  # 32-bit: cheap compares
        if FULL:  # the keys every row sees lie in [q_last - WINDOW + 1, q_first]
            q_first = tl.min(tl.where(rmask, qpos, 2147483647), axis=0)
            q_last = tl.max(tl.where(rmask, qpos, -2147483647), axis=0)
        if LOG2:
            scale = scale * 1.4426950408889634
        for s0 in range(start, end, BS):
            offs = s0 + tl.arange(0, BS)
            smask = offs < end
            held = tl.load(held_ptr + offs, mask=smask, other=-1).to(tl.int32)
            k = tl.load(k_base + offs[:, None] * s_ks + d[None, :], mask=smask[:, None], other=0).to(q.dtype)
            if IEEE:
                scores = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                scores = tl.dot(q, tl.trans(k))
            if QUANT:
                k_scale = tl.load(ks_ptr + b64 * s_sb + h * s_sh + offs, mask=smask, other=0.0)
                if LOG2:
                    scores = scores * (k_scale * scale)[None, :]
                else:
                    scores = scores * k_scale[None, :]
            if LOG2 and not QUANT:
                scores = scores * scale
            full = False
            if FULL:  # slots past `end` hold -1 here: a block with any of them is never full
                first_held = tl.min(held, axis=0)
                full = (first_held >= 0) & (tl.max(held, axis=0) <= q_first) & (first_held + WINDOW > q_last)
            if not full:
                if BOUNDS:  # slot s is seen from held[s] to held[s] + WINDOW - 1 (empty: never)
                    until = tl.where(held >= 0, held + WINDOW, -1)
                    if ONE_POS:
                        seen = ((qpos >= held) & (qpos < until))[None, :]
                    else:  # rows past R see keys too: their output is never stored
                        seen = (qpos[:, None] >= held[None, :]) & (qpos[:, None] < until[None, :])
                elif ONE_POS:
                    seen = ((held >= 0) & (qpos - held < WINDOW) & (qpos >= held))[None, :] & rmask[:, None]
                else:
                    distance = qpos[:, None] - held[None, :]
                    seen = (held >= 0)[None, :] & (distance >= 0) & (distance < WINDOW) & rmask[:, None]
                scores = tl.where(seen, scores if LOG2 else scores * scale, float("-inf"))
            elif not LOG2:
                scores = scores * scale
            m_new = tl.maximum(m, tl.max(scores, axis=1))
            if IEEE:  # fp32 inputs: the accurate exp keeps the fp32 model exact
                alpha = fmath.exp(m - m_new)
                p = fmath.exp(scores - m_new[:, None])
            elif LOG2:  # scores are already in log2 units
                alpha = tl.math.exp2(m - m_new)
                p = tl.math.exp2(scores - m_new[:, None])
            else:  # bf16/fp16: the hardware exp2 (rel. error ~1e-7, far below bf16's rounding)
                alpha = tl.math.exp2((m - m_new) * 1.4426950408889634)
                p = tl.math.exp2((scores - m_new[:, None]) * 1.4426950408889634)
            l = l * alpha + tl.sum(p, axis=1)
            v = tl.load(v_base + offs[:, None] * s_ks + d[None, :], mask=smask[:, None], other=0).to(q.dtype)
            if QUANT:
                pv = p * tl.load(vs_ptr + b64 * s_sb + h * s_sh + offs, mask=smask, other=0.0)[None, :]
            else:
                pv = p
            if IEEE:
                acc = acc * alpha[:, None] + tl.dot(pv, v, input_precision="ieee")
            else:
                acc = acc * alpha[:, None] + tl.dot(pv.to(q.dtype), v)
            m = m_new
        if DIRECT:
            out = acc / l[:, None]
            # out [B, T, H, D]: row (group g, position t) of KV head h is query head h G + g
            G = R // T
            o_row = (b * T + rows % T) * (HKV * G) + h * G + rows // T
            dst = out_ptr + o_row[:, None] * D + d[None, :]
            tl.store(dst, out.to(out_ptr.dtype.element_ty), mask=rmask[:, None])
        elif (start < n_valid) | (sp == 0):
            # A slice past the filled slots stores nothing: the grid has NS programs for the
            # whole ring and the fill decides how many hold keys; the combine reads only those.
            part = (bh * NS + sp) * R_PAD + rows
            keep = rows < R_PAD
            tl.store(m_ptr + part, m, mask=keep)
            tl.store(l_ptr + part, l, mask=keep)
            tl.store(acc_ptr + part[:, None] * D + d[None, :], acc, mask=keep[:, None])

    @triton.jit
    def attn_keys_kernel(
        q_ptr, k_ptr, v_ptr, ks_ptr, vs_ptr, pos_ptr, held_ptr, valid_ptr, out_ptr, m_ptr, l_ptr, acc_ptr,
        S, R, T, WINDOW, HKV, NS, s_kb, s_kh, s_ks, s_sb, s_sh, scale,
        RP: tl.constexpr, D: tl.constexpr, BS: tl.constexpr,
        IEEE: tl.constexpr, QUANT: tl.constexpr, ONE_POS: tl.constexpr, PDL: tl.constexpr,
        SPLIT: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        # A step of many streams (few query rows per KV head, all keys in one program): the
        # products turned round, scores^T = k [BS, D] q^T [D, RP] and acc^T = v^T [D, BS] p
        # [BS, RP], so the keys fill the mma's 16 rows and the R <= 8 query rows pad only to
        # its 8 columns. The arithmetic is attn_split_kernel's (DIRECT, one slice); v is read
        # as v^T, so its load pipelines like k's.
        # SPLIT: one slice of NS of the keys, as attn_split_kernel splits them, its partials
        # (m, l, acc) stored for attn_combine_kernel in that kernel's layout (R_PAD = RP).
        bh = tl.program_id(0)
        b = bh // HKV
        h = bh % HKV
        cols = tl.arange(0, RP)
        d = tl.arange(0, D)
        cmask = cols < R
        q_t = tl.load(q_ptr + (bh * R + cols)[None, :] * D + d[:, None], mask=cmask[None, :], other=0.0)
        m = tl.full([RP], -1e30, tl.float32)
        l = tl.zeros([RP], tl.float32)
        acc_t = tl.zeros([D, RP], tl.float32)
        b64 = b.to(tl.int64)
        k_base = k_ptr + b64 * s_kb + h * s_kh
        v_base = v_ptr + b64 * s_kb + h * s_kh
        n_valid = tl.minimum(tl.load(valid_ptr).to(tl.int32), S)
        start = 0
        end = n_valid
        if SPLIT:
            split = tl.cdiv(tl.cdiv(n_valid, NS), BS) * BS
            start = tl.program_id(1) * split
            end = tl.minimum(start + split, n_valid)
        if ONE_POS:
            qpos = tl.load(pos_ptr).to(tl.int32)
        else:
            qpos = tl.load(pos_ptr + cols % T, mask=cmask, other=0).to(tl.int32)
        for s0 in range(start, end, BS):
            offs = s0 + tl.arange(0, BS)
            smask = offs < end
            held = tl.load(held_ptr + offs, mask=smask, other=-1).to(tl.int32)
            # (attn_split_kernel's per-key bounds made this kernel 17-19 % slower on the H200:
            # bench/h200_session12/ab_attention_mask.log)
            if ONE_POS:
                seen = ((held >= 0) & (qpos - held < WINDOW) & (qpos >= held))[:, None] & cmask[None, :]
            else:
                distance = qpos[None, :] - held[:, None]
                seen = (held >= 0)[:, None] & (distance >= 0) & (distance < WINDOW) & cmask[None, :]
            k = tl.load(k_base + offs[:, None] * s_ks + d[None, :], mask=smask[:, None], other=0)
            k = k.to(q_t.dtype)
            if IEEE:
                scores = tl.dot(k, q_t, input_precision="ieee")
            else:
                scores = tl.dot(k, q_t)
            if QUANT:
                k_scale = tl.load(ks_ptr + b64 * s_sb + h * s_sh + offs, mask=smask, other=0.0)
                scores = scores * k_scale[:, None]
            scores = tl.where(seen, scores * scale, float("-inf"))
            m_new = tl.maximum(m, tl.max(scores, axis=0))
            if IEEE:
                alpha = fmath.exp(m - m_new)
                p = fmath.exp(scores - m_new[None, :])
            else:
                alpha = tl.math.exp2((m - m_new) * 1.4426950408889634)
                p = tl.math.exp2((scores - m_new[None, :]) * 1.4426950408889634)
            l = l * alpha + tl.sum(p, axis=0)
            v_t = tl.load(v_base + offs[None, :] * s_ks + d[:, None], mask=smask[None, :], other=0)
            v_t = v_t.to(q_t.dtype)
            if QUANT:
                p = p * tl.load(vs_ptr + b64 * s_sb + h * s_sh + offs, mask=smask, other=0.0)[:, None]
            if IEEE:
                acc_t = acc_t * alpha[None, :] + tl.dot(v_t, p, input_precision="ieee")
            else:
                acc_t = acc_t * alpha[None, :] + tl.dot(v_t, p.to(q_t.dtype))
            m = m_new
        if SPLIT:
            if (start < n_valid) | (tl.program_id(1) == 0):  # as attn_split_kernel
                part = (bh * NS + tl.program_id(1)) * RP + cols
                tl.store(m_ptr + part, m)
                tl.store(l_ptr + part, l)
                tl.store(acc_ptr + part[None, :] * D + d[:, None], acc_t)
        else:
            out = acc_t / l[None, :]
            G = R // T  # out [B, T, H, D]: column (group g, position t) of KV head h is head h G + g
            o_row = (b * T + cols % T) * (HKV * G) + h * G + cols // T
            dst = out_ptr + o_row[None, :] * D + d[:, None]
            tl.store(dst, out.to(out_ptr.dtype.element_ty), mask=cmask[None, :])

    @triton.jit
    def attn_combine_kernel(
        m_ptr, l_ptr, acc_ptr, out_ptr, valid_ptr, S, R, T, HKV, NS,
        R_PAD: tl.constexpr, D: tl.constexpr, NS_PAD: tl.constexpr, BS: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        pid = tl.program_id(0)
        bh = pid // R
        r = pid % R
        sp = tl.arange(0, NS_PAD)
        d = tl.arange(0, D)
        # the slices that hold keys, split as attn_split_kernel splits the fill (BS: its keys a step)
        n_valid = tl.minimum(tl.load(valid_ptr).to(tl.int32), S)
        split = tl.cdiv(tl.cdiv(n_valid, NS), BS) * BS
        smask = sp < tl.maximum(1, tl.cdiv(n_valid, tl.maximum(split, 1)))
        part = (bh * NS + sp) * R_PAD + r
        m = tl.load(m_ptr + part, mask=smask, other=-1e30)
        l = tl.load(l_ptr + part, mask=smask, other=0.0)
        w = fmath.exp(m - tl.max(m, axis=0))
        acc = tl.load(acc_ptr + part[:, None] * D + d[None, :], mask=smask[:, None], other=0.0)
        out = tl.sum(acc * w[:, None], axis=0) / tl.sum(l * w, axis=0)
        G = R // T  # out [B, T, H, D], as the split kernel writes it
        o_row = (bh // HKV * T + r % T) * (HKV * G) + bh % HKV * G + r // T
        tl.store(out_ptr + o_row * D + d, out.to(out_ptr.dtype.element_ty))

    return (
        rms_norm_kernel, rope_cache_kernel, silu_mul_kernel, attn_split_kernel, attn_combine_kernel,
        attn_keys_kernel,
    )  # fmt: skip


def _rows(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


# A streaming step of one stream: the decoder's 1 position, the encoder's 4 frames. Its launches
# take the settings below chosen inside the step's CUDA graph on the H200 (bench/tune_step_small.py;
# together they made its replay 2,252 -> 2,165 us with the same tokens in the eighteenth session,
# and the nineteenth's norm warps and RoPE elements 2,168 -> 2,103 us more: bench/RESULTS.md): norms
# of at most STEP_ROWS rows, and RoPE and split attention of one stream's at most STEP_ROWS
# positions. Larger launches (prompts, files, several streams) keep the settings measured for
# those.
STEP_ROWS = 4
# The norm kernels' warps (None: Triton's default, 4): for a step's rows 8 took 57 us off the
# step's replay on its own (1 or 2 warps added 150 us), 16 another 70 us (32 was 12 us slower
# than 16); more rows keep the default.
NORM_WARPS_STEP: int | None = 16
NORM_WARPS: int | None = None


def _one_stream_step(batch: int, positions: int) -> bool:
    return batch == 1 and positions <= STEP_ROWS


def _norm_options(device: torch.device, rows: int) -> dict[str, Any]:
    options: dict[str, Any] = dict(pdl.triton_options(device))
    warps = NORM_WARPS_STEP if rows <= STEP_ROWS else NORM_WARPS
    if warps is not None:
        options["num_warps"] = warps
    return options


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """rms_norm(x) * weight (* scale), one kernel; output in x's dtype."""
    kern = _kernels()[0]
    x2 = _rows(x)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    y2 = y.view(-1, x.shape[-1])
    n = x.shape[-1]
    s = weight if scale is None else scale
    kern[(x2.shape[0],)](
        x2, x2, weight, weight, s, y2, y2, n, x2.stride(0), 0, y2.stride(0), 0, eps,
        HAS_RES=False, HAS_RES_BIAS=False, HAS_SCALE=scale is not None, BLOCK=_next_pow2(n),
        **_norm_options(x.device, x2.shape[0]),
    )  # fmt: skip
    return y


def add_rms_norm(
    x: torch.Tensor,
    r: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    scale: torch.Tensor | None = None,
    r_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x + r, rms_norm(x + r) * weight (* scale)) in one kernel; the sum is rounded to x's dtype
    before the norm reads it, exactly like the unfused `x = x + r; norm(x)`. With `r_bias` [N],
    r + r_bias (rounded) stands for r: the bias add of the matmul that made r."""
    kern = _kernels()[0]
    x2, r2 = _rows(x), _rows(r)
    n = x.shape[-1]
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    o2, y2 = out.view(-1, n), y.view(-1, n)
    s = weight if scale is None else scale
    kern[(x2.shape[0],)](
        x2, r2, weight if r_bias is None else r_bias, weight, s, y2, o2, n,
        x2.stride(0), r2.stride(0), y2.stride(0), o2.stride(0), eps,
        HAS_RES=True, HAS_RES_BIAS=r_bias is not None, HAS_SCALE=scale is not None, BLOCK=_next_pow2(n),
        **_norm_options(x.device, x2.shape[0]),
    )  # fmt: skip
    return out, y


# Elements of qkv a RoPE/cache program handles (a power of 2) and its warps: on the H200, 1,024
# (one position) with 2 warps was the fastest for encoder chunks and 256-stream steps alike
# (bench/h200_session8/tune_folder_kernels.log). A one-stream step takes ROPE_STEP: 1,024 elements
# on 4 warps, 52 us off its replay against the eighteenth session's 2,048 on 4 and 6 us against
# 1,024 on 2 (bench/tune_step_small.py, with 8 norm warps; with 16, 2,048 on 4 or 8 tied it). At
# one position (the decoder) only the warps change anything; 2,048 elements take the encoder's 4
# frames 2 positions a program.
ROPE_ELEMENTS = 1024
ROPE_WARPS = 2
ROPE_STEP = (1024, 4)


def rope_qkv_to_cache(
    qkv: torch.Tensor,
    rotations: torch.Tensor,
    slots: torch.Tensor,
    cache: LayerKV,
    n_heads: int,
    n_kv_heads: int,
    head_dim: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """qkv [B, T, (H + 2 Hkv) D] (last dim contiguous), rotations complex [T, D/2], slots [T]
    -> rotated q [B, H, T, D]; rotated k and v are written into one layer's cache ring
    [B, Hkv, S, D] at the slots (like `KVCache.write`; int8 with scales if the cache is).
    `bias` [(H + 2 Hkv) D]: the projection's bias, added first (rounded like a separate add)."""
    kern = _kernels()[1]
    B, T, _ = qkv.shape
    kc, vc = cache.k, cache.v
    assert qkv.stride(-1) == 1 and kc.stride() == vc.stride() and kc.stride(-1) == 1
    ks, vs = (cache.k_scale, cache.v_scale) if cache.quantized else (kc, vc)
    assert ks is not None and vs is not None and ks.stride() == vs.stride()
    rot = torch.view_as_real(rotations)
    if not rot.is_contiguous():
        rot = rot.contiguous()
    q = torch.empty(B, n_heads, T, head_dim, dtype=qkv.dtype, device=qkv.device)
    # Up to 1,024 / D head vectors of up to ROPE_ELEMENTS / 1,024 positions a program: one
    # program per head vector made the encoder chunks of a file batch 20x slower than their
    # memory traffic (session 4), and loading each pair's partner a second time 3x (session 8)
    n_vectors = n_heads + 2 * n_kv_heads
    heads = max(1, min(_next_pow2(n_vectors), 1024 // head_dim))  # 96 or 48 heads: 6 programs
    elements, warps = ROPE_STEP if _one_stream_step(B, T) else (ROPE_ELEMENTS, ROPE_WARPS)
    positions = max(1, min(_next_pow2(T), elements // (heads * head_dim)))
    assert bias is None or (bias.is_contiguous() and bias.numel() == qkv.shape[-1])
    kern[(B, triton_cdiv(T, positions), triton_cdiv(n_vectors, heads))](
        qkv, qkv if bias is None else bias, rot, slots, q, kc, vc, ks, vs,
        T, n_heads, n_kv_heads,
        qkv.stride(0), qkv.stride(1),
        kc.stride(0), kc.stride(1), kc.stride(2),
        ks.stride(0), ks.stride(1),
        HALF=head_dim // 2, HB=heads, TB=positions, QUANT=cache.quantized, HAS_BIAS=bias is not None,
        num_warps=warps, **pdl.triton_options(qkv.device),
    )  # fmt: skip
    return q


def silu_mul(gate_up: torch.Tensor, interleaved: int = 0) -> torch.Tensor:
    """[..., 2 N] (gate | up) -> silu(gate) * up [..., N]. `interleaved` G > 0: the columns
    alternate G of gate and the G matching ones of up (`linear.interleave_gate_up`)."""
    kern = _kernels()[2]
    g2 = _rows(gate_up)
    n = gate_up.shape[-1] // 2
    assert interleaved == 0 or n % interleaved == 0
    y = torch.empty(*gate_up.shape[:-1], n, dtype=gate_up.dtype, device=gate_up.device)
    y2 = y.view(-1, n)
    block = min(2048, _next_pow2(n))
    kern[(g2.shape[0], triton_cdiv(n, block))](
        g2, y2, n, g2.stride(0), y2.stride(0), BLOCK=block, GROUP=interleaved, **pdl.triton_options(g2.device)
    )  # fmt: skip
    return y


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


ATTN_SPLIT_ROWS = 8  # query rows per KV head up to which the keys are split among programs
# Tiles of the chunk kernel (query rows, keys per step, warps, pipeline stages; None: Triton's
# default), by head size: bench/tune_attention.py measures the choices on the device.
CHUNK_TILES: dict[int, tuple[int, int, int, int | None]] = {64: (64, 128, 4, None), 128: (64, 64, 8, None)}
# The same over keys in bf16/fp16 (not int8), where they differ: the folder's encoder ring. On the
# H200 its chunk (64 streams x 128 frames, 877 slots) took 238-245 us on (128, 64, 4) against
# 281-284 us on (64, 128, 4), and the folder batch 7.81-7.98 s against 7.97-8.03 s; int8 rings
# were slower on it (368 against 351 us; bench/RESULTS.md, thirteenth and fourteenth sessions).
CHUNK_TILES_HALF: dict[int, tuple[int, int, int, int | None]] = {64: (128, 64, 4, None)}
# Keys per step, warps and pipeline stages (None: Triton's default) of a step whose keys are not
# split among programs (many streams), on `attn_keys_kernel` (the keys as the mma's rows). On the
# H200 at 256 streams, (32, 1) read an int8 cache in 39 / 67 / 120 us at 200 / 400 / 780 of 800
# slots, against 51 / 86 / 158 us for `attn_split_kernel` with STEP_TILE, with the same outputs
# bit for bit; the best of 39 tiles (bench/h200_session12/ab_step_sweep.log). None: the latter.
KEYS_TILE: tuple[int, int, int | None] | None = (32, 1, None)
# `attn_split_kernel`'s tile for that step when KEYS_TILE is None (the eighth session's best of
# 36 tiles, bench/h200_session8/tune_folder_kernels.log), kept for A/B runs.
STEP_TILE: tuple[int, int, int | None] = (32, 1, None)
# attn_split_kernel's visibility: two compares a score against per-key bounds (True), or the
# distance rule with the rows' mask (False, up to the eleventh session). On the H200 the bounds
# made a live step's split attention 13 % faster (7.9 -> 6.9 us for the decoder's 4 rows over
# 800 keys) and an int8 encoder chunk 4 % (bench/h200_session12/ab_attention_mask.log).
BOUND_MASK = True
# The chunk launch (prompts, encoder chunks of files): scores in log2 units (bf16/fp16 only) and
# blocks of keys every row sees whole skip the visibility test. With D = 64 a score costs the
# tensor cores 256 flops and the CUDA cores about a dozen instructions; on the H200 the two cut
# the folder's encoder chunk (64 x 128 frames) from 419 to 350 us on an int8 ring and from 321 to
# 283 us on bf16, 39 decoder positions over a whole 8,230-slot ring (mostly empty; a live prompt
# reads only the filled slots) from 450 to 343 us, and the folder batch from
# 8.19-8.47 s to 8.02-8.19 s with the same tokens (bench/h200_session13/ab_chunk_attention.log).
# Switches for A/B runs (bench/ab_chunk_attention.py).
CHUNK_LOG2 = True
CHUNK_FULL = True
# The same for a step whose keys are split among programs (one or a few streams), and the most
# programs a (stream, KV head)'s keys are split among. A one-stream step takes SPLIT_STEP's: on
# their own, the tile took 23 us off its replay and the cap of 8 slices 33 us
# (bench/tune_step_small.py); 2 warps tied 4 (nineteenth session). The last program to finish
# combining the slices instead of a second kernel (58 launches fewer) was no faster, 2,105 against
# 2,108 us (bench/h200_session19/split_last.patch).
SPLIT_TILE: tuple[int, int, int | None] = (64, 4, None)
SPLIT_MAX = 16
SPLIT_STEP: tuple[tuple[int, int, int | None], int] = ((32, 4, None), 8)
# (slots, slices): a one-stream step over more slots than this splits them among more programs.
# The slices' count is fixed when a graph is captured and the fill on the device sizes them, so
# the step's graphs are captured once for the first slots and once for the whole ring
# (model/graph_step.py). On the H200, from one saved state each (bench/ab_split_depth.py, replay):
# 100 positions deep, 8 slices 2,084-2,090 us, 16 / 32 / 64: +32 / +59 / +100 us (the programs
# past the fill still launch); 1,000 deep, 8: 2,215-2,218, 16: -17 us; 8,000 deep (the decoder's
# window is 8,192), 8: 2,921-2,923, 16 / 32 / 64: -318 / -459 / -467 us: 8 slices of 1,000 keys
# each ran 32 tiles one after another (bench/RESULTS.md, twenty-third session). Where 32 slices
# overtake 8: 1,100 deep, 8: 2,214-2,216, 16 and 32: -14 to -16 us; 1,500 deep, 8: 2,272-2,276,
# 16 and 32: -39 to -45 us (twenty-fourth session), so the second graph starts past 1,024 slots
# (the encoder's ring, 1,005 slots, is below it; its step takes SPLIT_STEP_ROWS's count).
SPLIT_STEP_DEEP: tuple[int, int] = (1024, 32)
# The slices of a one-stream step of T query positions, in place of the above (at most one per
# 32-key tile of the ring, and no more than fill the GPU). T = 4 is the encoder's step: its 4
# frames over a ring of 1,005 slots (the decoder's 4-position steps take the chunk kernel, 16
# rows a KV head). The rule above gave it 8 slices (each at least 128 keys); on the H200 16 took
# 19-22 us off the step's replay (4 / 12 / 20 / 24 / 32: +50 / +7 / +7 / +10 / +51 us against 8,
# 300 decoder positions deep, with the encoder's window full; bench/ab_split_rows.py).
SPLIT_STEP_ROWS: dict[int, int] = {4: 16}
# A step split among programs on `attn_keys_kernel` (the keys as the mma's rows, the query rows
# padded to its 8 columns; its tile: keys per step, warps, stages) instead of `attn_split_kernel`
# (the query rows padded to the mma's 16); None: the latter. Compiled for sm_90 (Triton 3.9), at
# head size 64 (the encoder) on (32, 4) it takes 145 registers a thread against the split
# kernel's 177 (three programs an SM instead of two); at 128 (the decoder) 178 against 176. On
# the H200 inside the step's graph: (32, 4) -14.5 us of replay, (16, 2) +8, (32, 2) +10,
# (16, 4) +41, (16, 1) +63 (bench/tune_step_small.py --knobs SPLIT_ON_KEYS; bench/RESULTS.md,
# twenty-seventh session).
SPLIT_ON_KEYS: tuple[int, int, int | None] | None = (32, 4, None)
COMBINE_WARPS = 4  # the combine kernel's warps (Triton's default; 1, 2 and 8 were within 3 us of it)


def _tiling(warps: int, stages: int | None) -> dict[str, int]:
    """A tile's launch options: its warps, and its pipeline stages unless Triton's default."""
    return {"num_warps": warps} if stages is None else {"num_warps": warps, "num_stages": stages}


def split_count(batch: int, positions: int, slots: int, fill: int) -> int:
    """Programs a (stream, KV head)'s keys are split among in a step of `positions` over a ring of
    `slots`, where `fill` programs a KV head fill the GPU: up to SPLIT_STEP's cap for a one-stream
    step (SPLIT_STEP_DEEP's past its slots), SPLIT_MAX otherwise, each slice at least 2 blocks of
    64 keys; SPLIT_STEP_ROWS's for the encoder's step, each slice at least one tile."""
    block = 64
    if not _one_stream_step(batch, positions):
        return max(1, min(SPLIT_MAX, triton_cdiv(slots, 2 * block), fill))
    if positions in SPLIT_STEP_ROWS:
        return max(1, min(SPLIT_STEP_ROWS[positions], triton_cdiv(slots, SPLIT_STEP[0][0]), fill))
    most = SPLIT_STEP_DEEP[1] if slots > SPLIT_STEP_DEEP[0] else SPLIT_STEP[1]
    return max(1, min(most, triton_cdiv(slots, 2 * block), fill))


@cache
def _programs_to_fill(device: torch.device) -> int:
    """About 4 resident programs per SM: the split kernel needs no more to fill the GPU."""
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def attention_applies(q: torch.Tensor) -> bool:
    """Whether `attention` takes q [B, H, T, D]: CUDA and a power-of-2 head size."""
    D = q.shape[-1]
    return enabled(q) and D == _next_pow2(D) and D >= 16


def attention(
    q: torch.Tensor,
    kv: LayerKV,
    positions: torch.Tensor,
    held: torch.Tensor,
    window: int,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Like `layers.attend` (q [B, H, T, D], keys/values [B, Hkv, S, D] with the same strides,
    in q's dtype or int8 with scales; query t at `positions[t]` sees slot s, which holds
    `held[s]`, iff 0 <= positions[t] - held[s] < window) -> [B, H, T, D] (a view of a
    contiguous [B, T, H, D]), in fp32 with an online softmax and tensor-core dots. Two shapes:
    - a streaming step (<= 8 query rows per KV head): the keys are split among programs (flash
      decoding; ~5.6 us a call on the H100 against 24 us for a broadcast multiply-reduce; the
      slices on `attn_keys_kernel`, `SPLIT_ON_KEYS`) and a second kernel combines them, unless
      many streams fill the GPU on their own (then one program a stream and KV head runs over
      all keys, `attn_keys_kernel` again);
    - a chunk (prompt, encoder chunks of files): blocks of query rows each run over the keys
      they can see (flash attention), without materialising the [G*T, S] scores.

    `valid` (a device integer) bounds the slots read to the first min(valid, S): the slots a
    ring buffer has filled so far, so a graph captured over the whole ring costs what is used."""
    split_kernel, combine_kernel = _kernels()[3:5]
    k, v = kv.k, kv.v
    B, H, T, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    R = (H // Hkv) * T
    q = q.contiguous()
    assert k.stride() == v.stride() and k.stride(-1) == 1
    assert kv.quantized or k.dtype == q.dtype
    assert (
        positions.shape == (T,) and held.shape == (S,) and positions.is_contiguous() and held.is_contiguous()
    )
    ks, vs = (kv.k_scale, kv.v_scale) if kv.quantized else (k, v)
    assert ks is not None and vs is not None and ks.stride() == vs.stride()
    if valid is None:
        valid = torch.full((), S, dtype=torch.long, device=q.device)
    # Written as [B, T, H, D] and returned as a [B, H, T, D] view of it: the output projection
    # reads [B, T, H D], which is then a view too (a copy kernel per layer for 4 encoder frames).
    out = torch.empty(B, T, H, D, dtype=q.dtype, device=q.device)
    args = (positions, held, valid)
    sizes = (S, R, T, window, Hkv)
    strides = (k.stride(0), k.stride(1), k.stride(2), ks.stride(0), ks.stride(1), D**-0.5)
    flags: dict[str, Any] = dict(D=D, IEEE=q.dtype == torch.float32, QUANT=kv.quantized, ONE_POS=T == 1)
    launch = pdl.triton_options(q.device)
    flags.update(launch)
    if R > ATTN_SPLIT_ROWS:
        tile = CHUNK_TILES_HALF.get(D) if not kv.quantized and not flags["IEEE"] else None
        rows, keys, warps, stages = tile or CHUNK_TILES.get(D, (64, 64, 4 if D <= 64 else 8, None))
        split_kernel[(B * Hkv, 1, triton_cdiv(R, rows))](
            q, k, v, ks, vs, *args, out, out, out, out, *sizes, 1, *strides,
            R_PAD=rows, RB=rows, BS=keys, DIRECT=True, BOUNDS=BOUND_MASK, **_tiling(warps, stages), **flags,
            LOG2=CHUNK_LOG2 and not flags["IEEE"], FULL=CHUNK_FULL,
        )  # fmt: skip
        return out.transpose(1, 2)
    # Split the keys among programs until the GPU is full (`split_count`); many streams fill it on
    # their own and need no combine.
    fill = triton_cdiv(_programs_to_fill(q.device), B * Hkv)
    split_tile = SPLIT_STEP[0] if _one_stream_step(B, T) else SPLIT_TILE
    n_split = split_count(B, T, S, fill)
    if n_split == 1 and KEYS_TILE is not None:
        keys, warps, stages = KEYS_TILE
        _kernels()[5][(B * Hkv,)](
            q, k, v, ks, vs, *args, out, out, out, out, *sizes, 1, *strides,
            RP=max(2, _next_pow2(R)), BS=keys, **_tiling(warps, stages), **flags, SPLIT=False,
        )  # fmt: skip
        return out.transpose(1, 2)
    if n_split == 1:
        keys, warps, stages = STEP_TILE
        split_kernel[(B * Hkv, 1, 1)](
            q, k, v, ks, vs, *args, out, out, out, out, *sizes, 1, *strides,
            R_PAD=16, RB=16, BS=keys, DIRECT=True, BOUNDS=BOUND_MASK, **_tiling(warps, stages), **flags,
            LOG2=False, FULL=False,
        )  # fmt: skip
        return out.transpose(1, 2)
    keys, warps, stages = split_tile
    r_pad = max(2, _next_pow2(R))
    m = torch.empty(B * Hkv * n_split * r_pad, dtype=torch.float32, device=q.device)
    l = torch.empty_like(m)
    acc = torch.empty(B * Hkv * n_split * r_pad, D, dtype=torch.float32, device=q.device)
    if SPLIT_ON_KEYS is not None:  # the keys as the mma's rows (attn_keys_kernel, SPLIT)
        keys, warps, stages = SPLIT_ON_KEYS
        _kernels()[5][(B * Hkv, n_split)](
            q, k, v, ks, vs, *args, out, m, l, acc, *sizes, n_split, *strides,
            RP=r_pad, BS=keys, **_tiling(warps, stages), **flags, SPLIT=True,
        )  # fmt: skip
    else:
        split_kernel[(B * Hkv, n_split, 1)](
            q, k, v, ks, vs, *args, m, l, acc, out, *sizes, n_split, *strides,
            R_PAD=r_pad, RB=16, BS=keys, DIRECT=False, BOUNDS=BOUND_MASK, **_tiling(warps, stages), **flags,
            LOG2=False, FULL=False,
        )  # fmt: skip
    combine_kernel[(B * Hkv * R,)](
        m, l, acc, out, valid, S, R, T, Hkv, n_split,
        R_PAD=r_pad, D=D, NS_PAD=_next_pow2(n_split), BS=keys, **launch, **_tiling(COMBINE_WARPS, None),
    )  # fmt: skip
    return out.transpose(1, 2)
