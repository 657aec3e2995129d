"""HF transformers' VoxtralRealtimeForConditionalGeneration built from our tensors.

The numerical reference for the tests and the speed baseline for `bench --compare transformers`.
transformers is an optional (test) dependency: this module is only imported when asked for.
The tensors are Mistral-native; HF's own conversion permutes wq/wk (and the wq bias) from the
interleaved RoPE pair layout to rotate-half, and so do we.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0
from voxtral_desktop.weights.names import ADAPTER_PREFIX, ENCODER_PREFIX, TOK_EMBEDDINGS


def hf_config(config: ModelConfig) -> Any:
    from transformers import VoxtralRealtimeConfig

    enc, dec = config.encoder, config.decoder
    return VoxtralRealtimeConfig(
        audio_config={
            "hidden_size": enc.dim,
            "intermediate_size": enc.hidden_dim,
            "num_hidden_layers": enc.n_layers,
            "num_attention_heads": enc.n_heads,
            "head_dim": enc.head_dim,
            "num_mel_bins": enc.n_mels,
            "rms_norm_eps": enc.norm_eps,
            "sliding_window": enc.sliding_window,
            # The real model uses 1e6; transformers' default for the encoder is 10000 (a known trap).
            "rope_parameters": {"rope_type": "default", "rope_theta": enc.rope_theta},
        },
        text_config={
            "vocab_size": dec.vocab_size,
            "hidden_size": dec.dim,
            "intermediate_size": dec.hidden_dim,
            "num_hidden_layers": dec.n_layers,
            "num_attention_heads": dec.n_heads,
            "num_key_value_heads": dec.n_kv_heads,
            "head_dim": dec.head_dim,
            "rms_norm_eps": dec.norm_eps,
            "sliding_window": dec.sliding_window,
            "rope_parameters": {"rope_type": "default", "rope_theta": dec.rope_theta},
        },
        downsample_factor=config.downsample_factor,
    )


def _to_rotate_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Interleaved pair layout -> HF rotate-half layout (rows of a weight, or a bias)."""
    rows, rest = w.shape[0], w.shape[1:]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *rest).transpose(1, 2).reshape(rows, *rest)


def hf_state_dict(
    config: ModelConfig,
    tensors: Mapping[str, torch.Tensor | Q4Weight],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    def get(name: str) -> torch.Tensor:
        t = tensors[name]
        if isinstance(t, Q4Weight):
            return dequantize_q4_0(t.blocks.to(device), dtype)
        return t.to(device=device, dtype=dtype)

    enc, dec = config.encoder, config.decoder
    sd: dict[str, torch.Tensor] = {}
    e, a = ENCODER_PREFIX, "model.audio_tower."
    for i in (0, 1):
        for kind in ("weight", "bias"):
            sd[f"{a}embedder.conv{i + 1}.{kind}"] = get(f"{e}conv_layers.{i}.conv.{kind}")
    for i in range(enc.n_layers):
        src, dst = f"{e}transformer.layers.{i}.", f"{a}layers.{i}."
        sd[dst + "self_attn.q_proj.weight"] = _to_rotate_half(get(src + "attention.wq.weight"), enc.n_heads)
        sd[dst + "self_attn.q_proj.bias"] = _to_rotate_half(get(src + "attention.wq.bias"), enc.n_heads)
        sd[dst + "self_attn.k_proj.weight"] = _to_rotate_half(get(src + "attention.wk.weight"), enc.n_heads)
        sd[dst + "self_attn.v_proj.weight"] = get(src + "attention.wv.weight")
        sd[dst + "self_attn.v_proj.bias"] = get(src + "attention.wv.bias")
        sd[dst + "self_attn.o_proj.weight"] = get(src + "attention.wo.weight")
        sd[dst + "self_attn.o_proj.bias"] = get(src + "attention.wo.bias")
        sd[dst + "self_attn_layer_norm.weight"] = get(src + "attention_norm.weight")
        sd[dst + "final_layer_norm.weight"] = get(src + "ffn_norm.weight")
        sd[dst + "mlp.gate_proj.weight"] = get(src + "feed_forward.w1.weight")
        sd[dst + "mlp.down_proj.weight"] = get(src + "feed_forward.w2.weight")
        sd[dst + "mlp.down_proj.bias"] = get(src + "feed_forward.w2.bias")
        sd[dst + "mlp.up_proj.weight"] = get(src + "feed_forward.w3.weight")
    sd[a + "norm.weight"] = get(e + "transformer.norm.weight")
    sd["model.multi_modal_projector.linear_1.weight"] = get(ADAPTER_PREFIX + "0.weight")
    sd["model.multi_modal_projector.linear_2.weight"] = get(ADAPTER_PREFIX + "2.weight")
    emb = get(TOK_EMBEDDINGS)
    sd["model.language_model.embed_tokens.weight"] = emb
    sd["lm_head.weight"] = emb
    lm = "model.language_model."
    for i in range(dec.n_layers):
        src, dst = f"layers.{i}.", f"{lm}layers.{i}."
        sd[dst + "self_attn.q_proj.weight"] = _to_rotate_half(get(src + "attention.wq.weight"), dec.n_heads)
        sd[dst + "self_attn.k_proj.weight"] = _to_rotate_half(
            get(src + "attention.wk.weight"), dec.n_kv_heads
        )
        sd[dst + "self_attn.v_proj.weight"] = get(src + "attention.wv.weight")
        sd[dst + "self_attn.o_proj.weight"] = get(src + "attention.wo.weight")
        sd[dst + "input_layernorm.weight"] = get(src + "attention_norm.weight")
        sd[dst + "post_attention_layernorm.weight"] = get(src + "ffn_norm.weight")
        sd[dst + "mlp.gate_proj.weight"] = get(src + "feed_forward.w1.weight")
        sd[dst + "mlp.down_proj.weight"] = get(src + "feed_forward.w2.weight")
        sd[dst + "mlp.up_proj.weight"] = get(src + "feed_forward.w3.weight")
        sd[dst + "ada_rms_norm.linear1.weight"] = get(src + "ada_rms_norm_t_cond.0.weight")
        sd[dst + "ada_rms_norm.linear2.weight"] = get(src + "ada_rms_norm_t_cond.2.weight")
    sd[lm + "norm.weight"] = get("norm.weight")
    return sd


def hf_model(
    config: ModelConfig,
    tensors: Mapping[str, torch.Tensor | Q4Weight],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Any:
    from transformers import VoxtralRealtimeForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = VoxtralRealtimeForConditionalGeneration(hf_config(config)).eval()
    finally:
        torch.set_default_dtype(previous)
    missing, unexpected = model.load_state_dict(
        hf_state_dict(config, tensors, dtype=dtype, device=device), strict=False
    )
    # The rotary/time-embedding buffers are not persistent; nothing else may be missing.
    if unexpected or not all("inv_freq" in m for m in missing):
        raise RuntimeError(f"HF state dict mismatch: missing {missing}, unexpected {unexpected}")
    return model


def hf_features(padded: np.ndarray) -> torch.Tensor:
    from transformers import VoxtralRealtimeFeatureExtractor

    return VoxtralRealtimeFeatureExtractor()(padded, sampling_rate=16000, return_tensors="pt")[
        "input_features"
    ]


@torch.no_grad()
def hf_generate(model: Any, features: torch.Tensor, stream: StreamConfig) -> list[int]:
    """Every id HF generates after the prompt, stopping before EOS (greedy)."""
    device = next(model.parameters()).device
    prompt = torch.tensor([stream.prompt_ids()], device=device)
    with warnings.catch_warnings():
        # HF sets max_length from the audio itself; it warns that it is not `max_new_tokens`.
        warnings.filterwarnings("ignore", message=".*max_length.*")
        out = model.generate(
            input_ids=prompt,
            input_features=features.to(device=device, dtype=next(model.parameters()).dtype),
            num_delay_tokens=stream.n_delay_tokens,
            do_sample=False,
        )
    generated = out[0, prompt.shape[1] :].tolist()
    return generated[: generated.index(2)] if 2 in generated else generated


def hf_generate_timing(
    config: ModelConfig,
    tensors: Mapping[str, torch.Tensor | Q4Weight],
    device: torch.device,
    audio: np.ndarray,
) -> dict[str, float]:
    from voxtral_desktop.engine.batch import padded_audio

    stream = StreamConfig(480)
    model = hf_model(config, tensors, dtype=torch.bfloat16, device=device)
    features = hf_features(padded_audio(audio, stream))
    hf_generate(model, features[..., : 8 * 60], stream)  # warm-up
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    t0 = time.perf_counter()
    tokens = hf_generate(model, features, stream)
    torch.cuda.synchronize(device) if device.type == "cuda" else None
    total = time.perf_counter() - t0
    n_steps = features.shape[-1] // 8 - stream.n_prompt_tokens
    del model
    return {"total_s": total, "step_ms": total / max(n_steps, 1) * 1e3, "tokens": float(len(tokens))}
