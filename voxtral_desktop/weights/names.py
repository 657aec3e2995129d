"""The checkpoint's tensor names and shapes, derived from a `ModelConfig`.

Both on-disk formats (Mistral-native safetensors and our GGUF) use these Mistral-native names,
so one table serves every reader, the converter and the model. Shapes are written in torch order
(out_features, in_features); GGUF stores them reversed, the readers flip them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.model.voxtral import CHECKPOINT_PREFIXES

ENCODER_PREFIX = CHECKPOINT_PREFIXES["encoder."]
ADAPTER_PREFIX = CHECKPOINT_PREFIXES["adapter."]
TOK_EMBEDDINGS = CHECKPOINT_PREFIXES["tok_embeddings."] + "weight"


class TensorKind(Enum):
    LINEAR = "linear"  # a matmul weight: stored as Q4_0 in our GGUF
    EMBEDDING = "embedding"  # token embedding (also the tied output head): Q4_0 in our GGUF
    VECTOR = "vector"  # norms and biases: F32
    CONV = "conv"  # conv stem weights: F32


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    kind: TensorKind

    @property
    def quantizable(self) -> bool:
        return self.kind in (TensorKind.LINEAR, TensorKind.EMBEDDING)


def expected_tensors(config: ModelConfig) -> list[TensorSpec]:
    """Every tensor of the checkpoint, in a stable order (711 for the real model)."""
    enc, dec = config.encoder, config.decoder
    L, V, C = TensorKind.LINEAR, TensorKind.VECTOR, TensorKind.CONV
    specs: list[TensorSpec] = []

    def add(name: str, shape: tuple[int, ...], kind: TensorKind) -> None:
        specs.append(TensorSpec(name, shape, kind))

    e = ENCODER_PREFIX
    add(e + "conv_layers.0.conv.weight", (enc.dim, enc.n_mels, 3), C)
    add(e + "conv_layers.0.conv.bias", (enc.dim,), V)
    add(e + "conv_layers.1.conv.weight", (enc.dim, enc.dim, 3), C)
    add(e + "conv_layers.1.conv.bias", (enc.dim,), V)
    for i in range(enc.n_layers):
        p = f"{e}transformer.layers.{i}."
        add(p + "attention.wq.weight", (enc.attn_dim, enc.dim), L)
        add(p + "attention.wq.bias", (enc.attn_dim,), V)
        add(p + "attention.wk.weight", (enc.attn_dim, enc.dim), L)
        add(p + "attention.wv.weight", (enc.attn_dim, enc.dim), L)
        add(p + "attention.wv.bias", (enc.attn_dim,), V)
        add(p + "attention.wo.weight", (enc.dim, enc.attn_dim), L)
        add(p + "attention.wo.bias", (enc.dim,), V)
        add(p + "attention_norm.weight", (enc.dim,), V)
        add(p + "ffn_norm.weight", (enc.dim,), V)
        add(p + "feed_forward.w1.weight", (enc.hidden_dim, enc.dim), L)
        add(p + "feed_forward.w2.weight", (enc.dim, enc.hidden_dim), L)
        add(p + "feed_forward.w2.bias", (enc.dim,), V)
        add(p + "feed_forward.w3.weight", (enc.hidden_dim, enc.dim), L)
    add(e + "transformer.norm.weight", (enc.dim,), V)

    stacked = enc.dim * config.downsample_factor
    add(ADAPTER_PREFIX + "0.weight", (dec.dim, stacked), L)
    add(ADAPTER_PREFIX + "2.weight", (dec.dim, dec.dim), L)
    add(TOK_EMBEDDINGS, (dec.vocab_size, dec.dim), TensorKind.EMBEDDING)

    q_dim, kv_dim = dec.n_heads * dec.head_dim, dec.n_kv_heads * dec.head_dim
    for i in range(dec.n_layers):
        p = f"layers.{i}."
        add(p + "attention.wq.weight", (q_dim, dec.dim), L)
        add(p + "attention.wk.weight", (kv_dim, dec.dim), L)
        add(p + "attention.wv.weight", (kv_dim, dec.dim), L)
        add(p + "attention.wo.weight", (dec.dim, q_dim), L)
        add(p + "attention_norm.weight", (dec.dim,), V)
        add(p + "ffn_norm.weight", (dec.dim,), V)
        add(p + "feed_forward.w1.weight", (dec.hidden_dim, dec.dim), L)
        add(p + "feed_forward.w2.weight", (dec.dim, dec.hidden_dim), L)
        add(p + "feed_forward.w3.weight", (dec.hidden_dim, dec.dim), L)
        add(p + "ada_rms_norm_t_cond.0.weight", (dec.ada_t_cond_dim, dec.dim), L)
        add(p + "ada_rms_norm_t_cond.2.weight", (dec.dim, dec.ada_t_cond_dim), L)
    add("norm.weight", (dec.dim,), V)
    return specs
