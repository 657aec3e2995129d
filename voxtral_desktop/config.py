"""Frozen configuration for the model, the audio front end and a streaming session.

Every number here is derived from, or checked against, `params.json` of
mistralai/Voxtral-Mini-4B-Realtime-2602 (see docs in the README). Nothing in this module
imports torch: the config is plain data that every layer of the package can read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from voxtral_desktop.errors import ConfigError

# --- token ids (Tekken control tokens; ids below N_SPECIAL_TOKENS are never text) ---------
BOS_ID = 1
EOS_ID = 2
PAD_ID = 11
STREAMING_PAD_ID = 32
STREAMING_WORD_ID = 33
N_SPECIAL_TOKENS = 1000

# --- audio geometry -------------------------------------------------------------------------
SAMPLE_RATE = 16_000
HOP_LENGTH = 160  # samples per mel frame (10 ms)
N_FFT = 400  # window = n_fft = 25 ms, periodic Hann
CONV_STRIDE = 2  # conv2 halves the mel frame rate: 100 Hz -> 50 Hz encoder frames
DOWNSAMPLE_FACTOR = 4  # 4 encoder frames are stacked into one decoder position
MEL_FRAMES_PER_TOKEN = CONV_STRIDE * DOWNSAMPLE_FACTOR  # 8
SAMPLES_PER_TOKEN = HOP_LENGTH * MEL_FRAMES_PER_TOKEN  # 1280 samples = 80 ms
TOKEN_MS = SAMPLES_PER_TOKEN * 1000 // SAMPLE_RATE  # 80
N_LEFT_PAD_TOKENS = 32  # digital silence in front of every stream (2.56 s)
N_RIGHT_PAD_EXTRA_TOKENS = 10  # right pad = n_delay + 1 + this many tokens of silence

MIN_DELAY_MS = TOKEN_MS
MAX_DELAY_MS = 2400
DEFAULT_DELAY_MS = 480


@dataclass(frozen=True)
class EncoderConfig:
    """The causal Whisper-style audio encoder."""

    dim: int = 1280
    n_layers: int = 32
    n_heads: int = 32
    head_dim: int = 64
    hidden_dim: int = 5120
    n_mels: int = 128
    rope_theta: float = 1e6
    norm_eps: float = 1e-5
    sliding_window: int = 750  # encoder frames (15 s)

    @property
    def attn_dim(self) -> int:
        return self.n_heads * self.head_dim


@dataclass(frozen=True)
class DecoderConfig:
    """The Mistral-style text decoder with delay-conditioned (Ada) RMS norm."""

    dim: int = 3072
    n_layers: int = 26
    n_heads: int = 32
    n_kv_heads: int = 8
    head_dim: int = 128
    hidden_dim: int = 9216
    vocab_size: int = 131_072
    rope_theta: float = 1e6
    norm_eps: float = 1e-5
    sliding_window: int = 8192  # decoder positions (~10.9 minutes)
    ada_t_cond_dim: int = 32
    tied_embeddings: bool = True


@dataclass(frozen=True)
class ModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    downsample_factor: int = DOWNSAMPLE_FACTOR
    global_log_mel_max: float = 1.5

    def __post_init__(self) -> None:
        enc, dec = self.encoder, self.decoder
        problems = []
        if dec.n_heads % dec.n_kv_heads:
            problems.append(f"n_heads {dec.n_heads} is not a multiple of n_kv_heads {dec.n_kv_heads}")
        if enc.head_dim % 2 or dec.head_dim % 2:
            problems.append("head_dim must be even for rotary embeddings")
        if self.downsample_factor != DOWNSAMPLE_FACTOR:
            problems.append(f"downsample_factor {self.downsample_factor} is not supported (only 4)")
        if dec.vocab_size <= N_SPECIAL_TOKENS:
            problems.append(f"vocab_size {dec.vocab_size} leaves no room for text tokens")
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                        problems.append(f"{name}.{k} must be positive, got {v}")
        if problems:
            raise ConfigError("invalid model hyperparameters: " + "; ".join(problems))

    # ---- params.json (Mistral-native) ---------------------------------------------------
    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ModelConfig:
        """Read a Mistral-native `params.json` dict."""
        try:
            whisper = params["multimodal"]["whisper_model_args"]
            enc = whisper["encoder_args"]
            audio = enc.get("audio_encoding_args", {})
            encoder = EncoderConfig(
                dim=int(enc["dim"]),
                n_layers=int(enc["n_layers"]),
                n_heads=int(enc["n_heads"]),
                head_dim=int(enc["head_dim"]),
                hidden_dim=int(enc["hidden_dim"]),
                n_mels=int(audio.get("num_mel_bins", 128)),
                rope_theta=float(enc.get("rope_theta", 1e6)),
                norm_eps=float(enc.get("norm_eps", 1e-5)),
                sliding_window=int(enc.get("sliding_window", 750)),
            )
            decoder = DecoderConfig(
                dim=int(params["dim"]),
                n_layers=int(params["n_layers"]),
                n_heads=int(params["n_heads"]),
                n_kv_heads=int(params["n_kv_heads"]),
                head_dim=int(params["head_dim"]),
                hidden_dim=int(params["hidden_dim"]),
                vocab_size=int(params["vocab_size"]),
                rope_theta=float(params.get("rope_theta", 1e6)),
                norm_eps=float(params.get("norm_eps", 1e-5)),
                sliding_window=int(params.get("sliding_window") or 8192),
                ada_t_cond_dim=int(params.get("ada_rms_norm_t_cond_dim", 32)),
                tied_embeddings=bool(params.get("tied_embeddings", True)),
            )
            downsample = int(whisper.get("downsample_args", {}).get("downsample_factor", 4))
            log_mel_max = float(audio.get("global_log_mel_max", 1.5))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"params.json is not a Voxtral Realtime config (missing or bad {exc})"
            ) from None
        return cls(
            encoder=encoder, decoder=decoder, downsample_factor=downsample, global_log_mel_max=log_mel_max
        )

    def to_params(self) -> dict[str, Any]:
        """The Mistral-native `params.json` dict for this config (round-trips `from_params`)."""
        enc, dec = self.encoder, self.decoder
        return {
            "dim": dec.dim,
            "n_layers": dec.n_layers,
            "head_dim": dec.head_dim,
            "hidden_dim": dec.hidden_dim,
            "n_heads": dec.n_heads,
            "n_kv_heads": dec.n_kv_heads,
            "use_biases": False,
            "causal": True,
            "rope_theta": dec.rope_theta,
            "norm_eps": dec.norm_eps,
            "vocab_size": dec.vocab_size,
            "tied_embeddings": dec.tied_embeddings,
            "sliding_window": dec.sliding_window,
            "ada_rms_norm_t_cond": True,
            "ada_rms_norm_t_cond_dim": dec.ada_t_cond_dim,
            "multimodal": {
                "whisper_model_args": {
                    "encoder_args": {
                        "audio_encoding_args": {
                            "sampling_rate": SAMPLE_RATE,
                            "frame_rate": SAMPLE_RATE / SAMPLES_PER_TOKEN,
                            "num_mel_bins": enc.n_mels,
                            "hop_length": HOP_LENGTH,
                            "window_size": N_FFT,
                            "global_log_mel_max": self.global_log_mel_max,
                            "transcription_format": "streaming",
                        },
                        "dim": enc.dim,
                        "n_layers": enc.n_layers,
                        "head_dim": enc.head_dim,
                        "hidden_dim": enc.hidden_dim,
                        "n_heads": enc.n_heads,
                        "n_kv_heads": enc.n_heads,
                        "use_biases": True,
                        "rope_theta": enc.rope_theta,
                        "causal": True,
                        "norm_eps": enc.norm_eps,
                        "sliding_window": enc.sliding_window,
                    },
                    "downsample_args": {"downsample_factor": self.downsample_factor},
                }
            },
        }


def check_delay_ms(delay_ms: int) -> int:
    """Validate a transcription delay and return the number of delay tokens."""
    if (
        not isinstance(delay_ms, int)
        or isinstance(delay_ms, bool)
        or delay_ms % TOKEN_MS
        or not MIN_DELAY_MS <= delay_ms <= MAX_DELAY_MS
    ):
        raise ConfigError(
            f"unsupported delay {delay_ms!r} ms: use a multiple of {TOKEN_MS} ms "
            f"from {MIN_DELAY_MS} to {MAX_DELAY_MS} (480 is recommended)"
        )
    return delay_ms // TOKEN_MS


@dataclass(frozen=True)
class StreamConfig:
    """Settings of one streaming session."""

    delay_ms: int = DEFAULT_DELAY_MS
    # Offline transcription stops at EOS (that is what the reference does); a caption overlay
    # that runs for hours may prefer to keep listening, so it can turn this off.
    stop_at_eos: bool = True

    def __post_init__(self) -> None:
        check_delay_ms(self.delay_ms)

    @property
    def n_delay_tokens(self) -> int:
        return self.delay_ms // TOKEN_MS

    @property
    def n_prompt_tokens(self) -> int:
        """BOS + [STREAMING_PAD] x (left pad + delay): 39 at 480 ms."""
        return 1 + N_LEFT_PAD_TOKENS + self.n_delay_tokens

    @property
    def n_right_pad_tokens(self) -> int:
        return self.n_delay_tokens + 1 + N_RIGHT_PAD_EXTRA_TOKENS

    def prompt_ids(self) -> list[int]:
        return [BOS_ID] + [STREAMING_PAD_ID] * (self.n_prompt_tokens - 1)
