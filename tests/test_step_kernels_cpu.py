"""The step's small Triton kernels outside its layers (kernels/tokens.py, positions.py, mel_tail.py)
in Triton's interpreter, on any machine: the token rows dequantised from the mma layout equal
`mma_q4.embed_rows` bit for bit (with and without the audio vector added), the two-pass argmax
equals torch.argmax, ties included, a captured step's positions, slots and rotations equal
`KVCache.begin` and `rope_tables`, the log-mel's elementwise kernels and the conv stem's unfolds
equal the torch ops. On
a GPU the same runs on CUDA, bit for bit (and tests/test_gpu.py runs the step's graphs with them).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: F401  (a missing Triton must fail, not skip)

from voxtral_desktop.kernels import conv_stem, mel_frames, mel_tail, positions, tokens
from voxtral_desktop.kernels.int4pack import q4_0_codes
from voxtral_desktop.kernels.mma_q4 import MmaQ4, embed_rows, pack
from voxtral_desktop.kernels.q4 import Q4Weight, quantize_q4_0

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _table(rows: int, cols: int) -> MmaQ4:
    g = torch.Generator().manual_seed(3)
    w = Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g)), (rows, cols))
    codes, scales = q4_0_codes(w)
    return MmaQ4(*(t.to(DEVICE) for t in pack(codes, scales)), rows, cols)


def _same(got: torch.Tensor, want: torch.Tensor) -> None:
    """Bit for bit, but for the interpreter's bf16 casts, which truncate where CUDA rounds to
    nearest (checked: 0.30468 -> 0.30273 there, 0.30469 in torch): a bf16 step or two then."""
    assert got.dtype == want.dtype and got.shape == want.shape
    if DEVICE.type == "cpu" and got.dtype == torch.bfloat16:
        step = 2**-7 * float(want.float().abs().max())
        assert float((got.float() - want.float()).abs().max()) <= 2 * step
    else:
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_embed_rows_from_the_mma_layout(dtype: torch.dtype) -> None:
    table = _table(48, 1088)  # 3 tiles, 17 iterations: a row takes two programs, the second partly
    ids = torch.tensor([[0, 7, 8, 15], [16, 31, 40, 47]], device=DEVICE)  # both halves of tiles
    want = embed_rows(table, ids, dtype)
    _same(tokens.embed_q4_rows(table.codes, table.scales, 1088, ids, dtype), want)
    audio = torch.randn(2, 4, 1088, generator=torch.Generator().manual_seed(4)).to(DEVICE, dtype)
    _same(tokens.embed_q4_rows(table.codes, table.scales, 1088, ids, dtype, audio), want + audio)


def test_greedy_is_torch_argmax_ties_included() -> None:
    g = torch.Generator().manual_seed(5)
    v = 2 * tokens.ARGMAX_BLOCK + 300  # three first-pass programs, the last partly
    logits = torch.randn(3, v, generator=g).bfloat16()
    logits[0, 5] = logits[0, v - 7] = 9.0  # a tie across programs: the first index wins
    logits[1, tokens.ARGMAX_BLOCK + 1] = logits[1, tokens.ARGMAX_BLOCK + 9] = 7.5  # within one
    logits[2, v - 1] = 11.0  # the very last logit
    logits = logits.to(DEVICE)
    out = torch.full((3,), -1, dtype=torch.long, device=DEVICE)
    also = torch.full((3,), -1, dtype=torch.long, device=DEVICE)
    tokens.greedy_into(logits, out, also)
    want = logits.argmax(-1)
    assert out.tolist() == want.tolist() == also.tolist() == [5, tokens.ARGMAX_BLOCK + 1, v - 1]


def test_positions_slots_and_rotations_of_a_captured_step() -> None:
    capacity, head_dim, theta = 1005, 64, 1e6
    counter = torch.tensor(1003, device=DEVICE)  # the ring wraps within these 4 positions
    slot_pos = torch.full((capacity,), -1, dtype=torch.long, device=DEVICE)
    pos, slots, rot = positions.advance_and_rotate(counter, slot_pos, 4, head_dim, theta)
    assert pos.tolist() == [1003, 1004, 1005, 1006] and slots.tolist() == [1003, 1004, 0, 1]
    assert int(counter) == 1007
    assert slot_pos[[1003, 1004, 0, 1]].tolist() == pos.tolist() and int((slot_pos >= 0).sum()) == 4
    want = positions.rope_tables(pos, head_dim, theta)
    assert rot.dtype == want.dtype == torch.complex64 and rot.shape == want.shape == (4, head_dim // 2)
    if DEVICE.type == "cuda":  # libdevice's cos and sin are the ones torch.polar calls
        assert torch.equal(torch.view_as_real(rot), torch.view_as_real(want))
    else:  # the interpreter's are numpy's
        torch.testing.assert_close(rot, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_log_mel_elementwise_kernels(dtype: torch.dtype) -> None:
    from voxtral_desktop.audio import mel

    g = torch.Generator().manual_seed(6)
    spec = (torch.randn(2, 8, 402, generator=g) * 30).to(DEVICE)
    power = mel_tail.power(spec)
    want_power = spec[..., :201].square() + spec[..., 201:].square()
    assert torch.equal(power, want_power)  # each square rounded before the add: no FMA
    mels = torch.rand(2, 128, 8, generator=g).to(DEVICE) ** 8  # down to ~1e-20: both clamps bite
    low = mel.GLOBAL_LOG_MEL_MAX - mel._DYNAMIC_RANGE
    got = mel_tail.log_mel(mels, mel._LOG_FLOOR, low, dtype)
    want = ((torch.clamp(torch.clamp(mels, min=mel._LOG_FLOOR).log10(), min=low) + 4.0) / 4.0).to(dtype)
    if DEVICE.type == "cuda":  # libdevice's log10 is the one torch calls
        assert torch.equal(got, want)
    else:  # the interpreter's is numpy's, and its bf16 casts truncate
        step = 2**-7 if dtype == torch.bfloat16 else 2**-23  # the values lie in [0.375, 1.375]
        torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=2 * step)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_steps_log_mel_in_three_kernels(dtype: torch.dtype) -> None:
    """`mel_frames.log_mel` (the samples copied in from pinned memory on CUDA, the DFT and power,
    the filter bank and the log) against the CPU's torch.stft frames, as the GPU's DFT matmul is
    held to them (tests/test_mel.py): within 1e-5, or a bf16 step of the output."""
    from voxtral_desktop.audio import mel
    from voxtral_desktop.benchmark import noise

    span = mel.window_span(8)
    rows = torch.from_numpy(np.stack([noise(span / 16000, seed=s)[:span] for s in range(3)]))
    rows[2, :600] = 0.0  # silence within a frame: the floor of the log must hold too
    want = mel.frames_to_log_mel(rows, 8)  # the CPU's
    basis = mel._dft_basis_on(DEVICE)
    _, filters = mel._constants_on(DEVICE)
    samples = rows.pin_memory() if DEVICE.type == "cuda" else rows
    low = mel.GLOBAL_LOG_MEL_MAX - mel._DYNAMIC_RANGE
    got = mel_frames.log_mel(samples, 8, mel.HOP_LENGTH, basis, filters, mel._LOG_FLOOR, low, dtype)
    assert got.dtype == dtype and got.shape == (3, mel.N_MELS, 8) and got.device.type == DEVICE.type
    step = 2**-7 * 1.375 if dtype == torch.bfloat16 else 0.0  # the values lie in [0.375, 1.375]
    torch.testing.assert_close(got.float().cpu(), want, rtol=0, atol=1e-5 + 2 * step)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("frames", [8, 2])
def test_conv_stem_unfolds_and_moves_the_tails_on(dtype: torch.dtype, frames: int) -> None:
    """kernels/conv_stem.py against the encoder's torch ops (cat, the tail's copy, unfold, GELU):
    conv1's input from its 2-frame tail and the mel [B, C, T]; conv2's from its 1-frame tail and
    conv1's output [B, T, C] through GELU, stride 2. 40 channels: a program of 32 and a partial one."""
    g = torch.Generator().manual_seed(11)
    B, C = 2, 40
    for tail_frames, stride, gelu in ((2, 1, False), (1, 2, True)):
        tail = torch.randn(B, C, tail_frames, generator=g).to(DEVICE, dtype)
        if gelu:  # the previous matmul's output, [B, T, C]
            x = (2 * torch.randn(B, frames, C, generator=g)).to(DEVICE, dtype)
            seq = torch.cat([tail, torch.nn.functional.gelu(x).transpose(1, 2)], dim=-1)
        else:
            x = torch.randn(B, C, frames, generator=g).to(DEVICE, dtype)
            seq = torch.cat([tail, x], dim=-1)
        want = seq.unfold(-1, 3, stride).permute(0, 2, 1, 3).reshape(B, -1, C * 3)
        got = conv_stem.unfold(tail, x, stride, channels_last=gelu, gelu=gelu)
        if gelu and dtype == torch.float32:
            # erf: numpy's (interpreter) or libdevice's, against torch's: 1 + erf cancels for
            # negative inputs, so a few fp32 steps of the sum's size (3e-7 seen on the CPU)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(tail, seq[..., -tail_frames:], rtol=1e-5, atol=1e-6)
        else:
            _same(got, want)
            _same(tail, seq[..., -tail_frames:].contiguous())


def test_the_encoder_on_the_conv_stem_kernels_equals_the_torch_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny encoder fed three steps of 8 mel frames with the conv stem's kernels (on CUDA
    they apply to such steps by themselves; here made to) and with the torch ops: the same
    frames out, and the same conv tails carried between the calls."""
    from voxtral_desktop.model.encoder import EncoderState, WhisperEncoder
    from voxtral_desktop.synthetic.model import tiny_config

    cfg = tiny_config().encoder
    torch.manual_seed(0)
    encoder = WhisperEncoder(cfg).to(DEVICE).eval()
    g = torch.Generator().manual_seed(12)
    mels = [torch.randn(1, cfg.n_mels, 8, generator=g).to(DEVICE) for _ in range(3)]
    runs, states = {}, {}
    for on in (False, True):
        monkeypatch.setattr(conv_stem, "applies", lambda tail, frames, on=on: on)
        st = EncoderState.allocate(cfg, batch=1, max_chunk_frames=8, device=DEVICE, dtype=torch.float32)
        with torch.no_grad():
            runs[on] = [encoder(m, st) for m in mels]
        states[on] = st
    for got, want in zip(runs[True], runs[False], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(states[True].conv1_tail, states[False].conv1_tail, rtol=0, atol=0)
    torch.testing.assert_close(states[True].conv2_tail, states[False].conv2_tail, rtol=1e-5, atol=1e-6)
