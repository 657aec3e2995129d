"""What makes a GGUF a Voxtral model: our metadata keys, and the config of key-less seed files.

Our converter writes these keys (all strings are UTF-8 GGUF strings):

    general.architecture   "voxtral_realtime"
    general.name           the source directory's name
    voxtral.format_version 1 (u32): bumped when the layout changes incompatibly
    voxtral.params_json    the Mistral-native params.json (ModelConfig.to_params()) as JSON text
    voxtral.tekken_json    the tokenizer file, byte for byte, as text

The seed's published `voxtral-q4.gguf` has the same tensor names but no metadata at all, so its
config is inferred from tensor shapes (`infer_config`). Head counts cannot be read from shapes
(only heads x head_dim is stored), so the real model's head_dim is assumed: 64 for the encoder,
128 for the decoder; rope theta, norm eps and sliding windows are the real model's as well.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from voxtral_desktop.config import DecoderConfig, EncoderConfig, ModelConfig
from voxtral_desktop.errors import ConfigError, ModelFileError
from voxtral_desktop.weights.names import ADAPTER_PREFIX, ENCODER_PREFIX, TOK_EMBEDDINGS
from voxtral_desktop.weights.native import config_from_params

ARCHITECTURE = "voxtral_realtime"
KEY_ARCHITECTURE = "general.architecture"
KEY_NAME = "general.name"
KEY_FORMAT_VERSION = "voxtral.format_version"
KEY_PARAMS_JSON = "voxtral.params_json"
KEY_TEKKEN_JSON = "voxtral.tekken_json"
FORMAT_VERSION = 1

SEED_ENCODER_HEAD_DIM = EncoderConfig().head_dim  # 64
SEED_DECODER_HEAD_DIM = DecoderConfig().head_dim  # 128


def is_ours(metadata: Mapping[str, Any]) -> bool:
    """True for a file our converter wrote (or one that claims to be, which is then validated)."""
    return metadata.get(KEY_ARCHITECTURE) == ARCHITECTURE or any(k.startswith("voxtral.") for k in metadata)


def config_from_metadata(metadata: Mapping[str, Any], where: str) -> ModelConfig:
    version = metadata.get(KEY_FORMAT_VERSION)
    if version != FORMAT_VERSION:
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ModelFileError(
                f"{where} was written by a newer voxtral-desktop (format {version}); upgrade to read it"
            )
        raise ModelFileError(
            f"{where}: metadata {KEY_FORMAT_VERSION} is {version!r}, expected {FORMAT_VERSION}"
        )
    arch = metadata.get(KEY_ARCHITECTURE)
    if arch != ARCHITECTURE:
        raise ModelFileError(f"{where}: general.architecture is {arch!r}, expected {ARCHITECTURE!r}")
    text = metadata.get(KEY_PARAMS_JSON)
    if not isinstance(text, str):
        raise ModelFileError(f"{where}: metadata {KEY_PARAMS_JSON} is missing or not a string")
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{where}: metadata {KEY_PARAMS_JSON} is not valid JSON ({exc.msg})") from None
    return config_from_params(params, f"{where} ({KEY_PARAMS_JSON})")


def _layer_count(shapes: Mapping[str, tuple[int, ...]], prefix: str, where: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for name in shapes if (m := pattern.match(name))}
    if not indices:
        raise ModelFileError(f"{where}: no tensors named {prefix}N.*: not a Voxtral Realtime model")
    n = max(indices) + 1
    if len(indices) != n:
        missing = min(set(range(n)) - indices)
        raise ModelFileError(
            f"{where}: layer {missing} is missing (found layers up to {n - 1} under {prefix})"
        )
    return n


def _heads(width: int, head_dim: int, what: str, where: str) -> int:
    if width % head_dim:
        raise ModelFileError(
            f"{where}: cannot infer the {what} head count: width {width} is not a multiple of the "
            f"real model's head_dim {head_dim} (convert from the native checkpoint instead)"
        )
    return width // head_dim


def infer_config(shapes: Mapping[str, tuple[int, ...]], where: str) -> ModelConfig:
    """The ModelConfig of a key-less (seed) GGUF, from its tensor shapes (torch order)."""
    e = ENCODER_PREFIX
    enc_l0 = f"{e}transformer.layers.0."
    needed = [
        f"{e}conv_layers.0.conv.weight",
        enc_l0 + "attention.wq.weight",
        enc_l0 + "feed_forward.w1.weight",
        ADAPTER_PREFIX + "0.weight",
        TOK_EMBEDDINGS,
        "layers.0.attention.wq.weight",
        "layers.0.attention.wk.weight",
        "layers.0.feed_forward.w1.weight",
        "layers.0.ada_rms_norm_t_cond.0.weight",
    ]
    for name in needed:
        if name not in shapes:
            raise ModelFileError(f"{where} has no tensor {name}: not a Voxtral Realtime model")
    try:
        conv_out, n_mels = shapes[needed[0]][:2]
        enc_attn = shapes[needed[1]][0]
        enc_hidden = shapes[needed[2]][0]
        adapter_in = shapes[needed[3]][1]
        vocab, dim = shapes[TOK_EMBEDDINGS]
        q_dim, kv_dim = shapes[needed[5]][0], shapes[needed[6]][0]
        dec_hidden = shapes[needed[7]][0]
        ada_dim = shapes[needed[8]][0]
    except (ValueError, IndexError):
        raise ModelFileError(f"{where}: tensor shapes do not look like Voxtral Realtime") from None
    if adapter_in % conv_out:
        raise ModelFileError(
            f"{where}: adapter input {adapter_in} is not a multiple of encoder dim {conv_out}"
        )
    try:
        return ModelConfig(
            encoder=EncoderConfig(
                dim=conv_out,
                n_layers=_layer_count(shapes, f"{e}transformer.layers.", where),
                n_heads=_heads(enc_attn, SEED_ENCODER_HEAD_DIM, "encoder", where),
                head_dim=SEED_ENCODER_HEAD_DIM,
                hidden_dim=enc_hidden,
                n_mels=n_mels,
            ),
            decoder=DecoderConfig(
                dim=dim,
                n_layers=_layer_count(shapes, "layers.", where),
                n_heads=_heads(q_dim, SEED_DECODER_HEAD_DIM, "decoder query", where),
                n_kv_heads=_heads(kv_dim, SEED_DECODER_HEAD_DIM, "decoder key/value", where),
                head_dim=SEED_DECODER_HEAD_DIM,
                hidden_dim=dec_hidden,
                vocab_size=vocab,
                ada_t_cond_dim=ada_dim,
            ),
            downsample_factor=adapter_in // conv_out,
        )
    except ConfigError as exc:
        raise ModelFileError(f"{where}: inferred config is invalid: {exc}") from None
