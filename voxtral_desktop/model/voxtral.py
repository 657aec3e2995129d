"""The whole model: encoder -> adapter -> decoder, and the tied token table.

This module holds parameters and pure forward functions only; all streaming state is passed
in (`EncoderState`, `DecoderState`) and the decoding protocol lives in `engine/session.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.kernels.linear import TiedEmbedding
from voxtral_desktop.model.decoder import Decoder, DecoderState
from voxtral_desktop.model.encoder import EncoderState, WhisperEncoder

# Our module paths -> the checkpoint's (Mistral-native) tensor name prefixes.
CHECKPOINT_PREFIXES = {
    "encoder.": "mm_streams_embeddings.embedding_module.whisper_encoder.",
    "adapter.": "mm_streams_embeddings.embedding_module.audio_language_projection.",
    "tok_embeddings.": "mm_streams_embeddings.embedding_module.tok_embeddings.",
    "decoder.": "",
}


def checkpoint_name(module_name: str) -> str:
    for ours, theirs in CHECKPOINT_PREFIXES.items():
        if module_name.startswith(ours):
            return theirs + module_name[len(ours) :]
    raise KeyError(module_name)


class VoxtralModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        enc, dec = config.encoder, config.decoder
        self.encoder = WhisperEncoder(enc)
        # Linear 5120 -> 3072, GELU (erf), Linear 3072 -> 3072; indices 0 and 2 match the checkpoint.
        self.adapter = nn.Sequential(
            nn.Linear(enc.dim * config.downsample_factor, dec.dim, bias=False),
            nn.GELU(),
            nn.Linear(dec.dim, dec.dim, bias=False),
        )
        self.tok_embeddings = TiedEmbedding(torch.empty(dec.vocab_size, dec.dim, device="meta"))
        self.decoder = Decoder(dec)
        # KV caches of the states built for this model: int8 codes + scales, or the compute
        # dtype (set by the loader: kernels/select.py `choose_kv_int8`).
        self.kv_int8 = False

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.norm.weight.device

    def embed_audio(self, mel: torch.Tensor, state: EncoderState) -> torch.Tensor:
        """mel [B, n_mels, 8n] -> one audio vector per decoder position [B, n, dec_dim]."""
        frames = self.encoder(mel, state)  # [B, 4n, enc_dim]
        B, T, D = frames.shape
        stacked = frames.reshape(
            B, T // self.config.downsample_factor, D * self.config.downsample_factor
        )  # [B, n, 4D]
        return self.adapter(stacked)

    def decode(self, token_ids: torch.Tensor, audio: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Run T positions: ids [B, T] and audio vectors [B, T, dim] -> logits of the last position [B, V]."""
        x = self.tok_embeddings.embed(token_ids, audio.dtype, add=audio)  # [B, T, dim]
        h = self.decoder(x, state)  # [B, T, dim]
        return self.tok_embeddings.logits(h[:, -1])  # [B, V]
