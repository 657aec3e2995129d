"""The numerical reference: HF transformers' VoxtralRealtimeForConditionalGeneration.

Converts our Mistral-native tensors to an HF model (the same permutation HF's own conversion
script applies to wq/wk: interleaved RoPE pairs -> rotate-half) and runs HF's greedy generate.
Test-only: transformers is never imported by the package.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0
from voxtral_desktop.weights.names import ADAPTER_PREFIX, ENCODER_PREFIX, TOK_EMBEDDINGS


def hf_config(config: ModelConfig):
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
    rows = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *rest).transpose(1, 2).reshape(rows, *rest)


def hf_state_dict(config: ModelConfig, tensors: Mapping[str, torch.Tensor | Q4Weight]) -> dict[str, torch.Tensor]:
    def get(name: str) -> torch.Tensor:
        t = tensors[name]
        return dequantize_q4_0(t.blocks) if isinstance(t, Q4Weight) else t.to(torch.float32)

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
        sd[dst + "self_attn.k_proj.weight"] = _to_rotate_half(get(src + "attention.wk.weight"), dec.n_kv_heads)
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


def hf_model(config: ModelConfig, tensors: Mapping[str, torch.Tensor | Q4Weight]):
    from transformers import VoxtralRealtimeForConditionalGeneration

    model = VoxtralRealtimeForConditionalGeneration(hf_config(config)).eval()
    missing, unexpected = model.load_state_dict(hf_state_dict(config, tensors), strict=False)
    # The rotary/time-embedding buffers are not persistent; nothing else may be missing.
    assert not unexpected, unexpected
    assert all("inv_freq" in m for m in missing), missing
    return model


def pad_audio(audio: np.ndarray, stream: StreamConfig) -> np.ndarray:
    """The offline padding of mistral-common: 32 tokens of silence left; right to a token boundary + pad."""
    from voxtral_desktop.config import N_LEFT_PAD_TOKENS, SAMPLES_PER_TOKEN

    left = np.zeros(N_LEFT_PAD_TOKENS * SAMPLES_PER_TOKEN, np.float32)
    partial = (-len(audio)) % SAMPLES_PER_TOKEN
    right = np.zeros(partial + stream.n_right_pad_tokens * SAMPLES_PER_TOKEN, np.float32)
    return np.concatenate([left, audio.astype(np.float32), right])


def hf_features(padded: np.ndarray) -> torch.Tensor:
    from transformers import VoxtralRealtimeFeatureExtractor

    fe = VoxtralRealtimeFeatureExtractor()
    return fe(padded, sampling_rate=16000, return_tensors="pt")["input_features"]  # [1, 128, frames]


@torch.no_grad()
def hf_greedy_tokens(model, features: torch.Tensor, stream: StreamConfig) -> list[int]:
    """Every id HF generates after the prompt, stopping before EOS."""
    prompt = torch.tensor([stream.prompt_ids()])
    with warnings.catch_warnings():
        # HF sets max_length from the audio itself; it warns that it is not `max_new_tokens`.
        warnings.filterwarnings("ignore", message=".*max_length.*")
        out = model.generate(
            input_ids=prompt,
            input_features=features,
            num_delay_tokens=stream.n_delay_tokens,
            do_sample=False,
        )
    generated = out[0, prompt.shape[1] :].tolist()
    return generated[: generated.index(2)] if 2 in generated else generated
