"""The streaming session: PCM in, tokens and text out, one code path for the mic and for files.

Decoding protocol (see the README's model notes):
- the stream is the user's audio behind 32 tokens (2.56 s) of digital silence; `flush` adds
  silence up to a token boundary plus (delay + 1 + 10) tokens, exactly like the offline padding;
- positions 0..L-1 (L = 1 + 32 + n_delay) hold BOS + [STREAMING_PAD]s; the ones that hear only
  the left pad (31) are the same for every stream, so they are encoded and decoded once, when
  the session is made, and restored by `reset`; the rest of the prompt runs as its audio
  arrives (one position at a time in the step's CUDA graph, the prompt's token fed); then each
  80 ms position p adds its audio vector to the embedding of the token the previous position
  chose; greedy argmax; emitted tokens are never revised;
- the offline reference generates one token less than there are positions, so after `flush` the
  last position is never run.
Feeding any chunking (1 sample .. minutes) runs the same positions in the same order.
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from voxtral_desktop.audio.mel import FrameWindows, frames_to_log_mel, window_span
from voxtral_desktop.config import (
    EOS_ID,
    HOP_LENGTH,
    MEL_FRAMES_PER_TOKEN,
    N_FFT,
    N_LEFT_PAD_TOKENS,
    SAMPLE_RATE,
    SAMPLES_PER_TOKEN,
    StreamConfig,
)
from voxtral_desktop.engine.events import SessionUpdate, TimedToken
from voxtral_desktop.engine.tokenizer import StreamingDetokenizer, TekkenTokenizer
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState
from voxtral_desktop.model.graph_step import GraphStep
from voxtral_desktop.model.voxtral import VoxtralModel

log = logging.getLogger(__name__)

# Positions of audio the encoder takes per call: large enough to be efficient on files, and the
# encoder KV cache holds its window plus one chunk.
MAX_CHUNK_TOKENS = 64
# A centred STFT frame reaches this many samples past its own hop: the lookahead behind the
# last frame of a token.
MEL_LOOKAHEAD = N_FFT // 2 - HOP_LENGTH


def _position_log_mel(samples: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The step graph's front end: [B, 1520] samples in pinned host memory -> the log-mel of their
    8 frames on `device`, in the model's dtype (rounded once from float32, in the same kernel on
    CUDA)."""
    return frames_to_log_mel(samples, MEL_FRAMES_PER_TOKEN, dtype, device)


@dataclass
class SessionState:
    """Everything that carries over between two `feed` calls; bounded however long it runs."""

    mel: FrameWindows  # complete frames not yet taken: < 8, fewer than a whole position
    encoder: EncoderState
    decoder: DecoderState
    audio_pending: list[torch.Tensor] = field(default_factory=list)  # [1, n, dim] vectors not yet decoded
    n_embedded: int = 0  # positions whose audio vector exists
    n_decoded: int = 0  # positions the decoder has run
    last_token: int = -1
    samples_fed: int = 0  # real (unpadded) samples
    finished: bool = False


class StreamingSession:
    """One stream at a time; create it once per model and `reset` it between utterances."""

    def __init__(
        self,
        model: VoxtralModel,
        tokenizer: TekkenTokenizer,
        config: StreamConfig,
        *,
        cuda_graphs: bool = False,
    ) -> None:
        """`cuda_graphs` runs every position after the prompt's silent part as replayed CUDA
        graphs: one for a whole 80 ms step (encoder + decoder) when audio arrives in real time
        (the prompt's own positions too, their tokens fed), and after the prompt a decoder-only
        one when many positions are ready at once (files, bursts, flush), whose encoder then runs
        in large chunks."""
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        device, dtype = model.device, model.dtype
        self._device, self._dtype = device, dtype
        # Where the log-mel of a position is computed: beside the model on a CUDA GPU (inside
        # the step's graph, so the CPU does no STFT between steps), else on the CPU (MPS has
        # not been measured with torch.stft).
        self._mel_device = device if device.type == "cuda" else torch.device("cpu")
        mcfg = model.config
        with torch.no_grad():
            ada = model.decoder.ada_scales(config.n_delay_tokens, device, dtype)
        self.state = SessionState(
            mel=FrameWindows(),
            encoder=EncoderState.allocate(
                mcfg.encoder,
                batch=1,
                max_chunk_frames=MAX_CHUNK_TOKENS * mcfg.downsample_factor,
                device=device,
                dtype=dtype,
                kv_int8=model.kv_int8,
            ),
            decoder=DecoderState.allocate(
                mcfg.decoder,
                ada,
                batch=1,
                max_chunk=config.n_prompt_tokens,
                device=device,
                dtype=dtype,
                kv_int8=model.kv_int8,
            ),
        )
        self.detokenizer = StreamingDetokenizer(tokenizer)
        self._prompt = torch.tensor([config.prompt_ids()], device=device)
        # Captured before anything runs: capture scribbles on the state, then resets it.
        self.graph = (
            GraphStep(
                model, self.state.encoder, self.state.decoder,
                front_end=functools.partial(_position_log_mel, dtype=dtype, device=device),
                front_end_samples=window_span(MEL_FRAMES_PER_TOKEN),
            )
            if cuda_graphs
            else None
        )  # fmt: skip
        self.bulk_graph = (
            GraphStep(model, None, self.state.decoder, token=self.graph.token)
            if self.graph is not None
            else None
        )
        if self.graph is not None:
            self._warm_up()
        self._start()
        # The left pad is the same silence for every stream: keep its state and restore it on reset.
        self._silent_prefix = self._snapshot()

    # ---- public API -------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new stream without reallocating anything."""
        st = self.state
        st.samples_fed = 0
        st.last_token = -1
        st.finished = False
        self.detokenizer.reset()
        self._restore(self._silent_prefix)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def audio_seconds(self) -> float:
        return self.state.samples_fed / SAMPLE_RATE

    def feed(self, pcm: np.ndarray) -> SessionUpdate:
        """Add mono float32 16 kHz samples; return the tokens that became decidable."""
        if self.state.finished:
            return SessionUpdate(finished=True)
        samples = np.ascontiguousarray(pcm, dtype=np.float32).reshape(-1)
        self.state.samples_fed += samples.size
        tokens = self._advance(samples, limit=None)
        return SessionUpdate(tuple(tokens), finished=self.state.finished)

    def flush(self) -> SessionUpdate:
        """End the stream: pad it like the offline reference and return every remaining token."""
        st = self.state
        if st.finished:
            return SessionUpdate(finished=True)
        real = st.samples_fed
        partial = -real % SAMPLES_PER_TOKEN
        pad = partial + self.config.n_right_pad_tokens * SAMPLES_PER_TOKEN
        n_positions = (
            N_LEFT_PAD_TOKENS + (real + partial) // SAMPLES_PER_TOKEN + self.config.n_right_pad_tokens
        )
        # The right edge of the centred STFT reflects the (silent) pad: feed its lookahead as zeros.
        tokens = self._advance(np.zeros(pad + MEL_LOOKAHEAD, np.float32), limit=n_positions)
        tail = self.detokenizer.flush()
        if tail and tokens:
            last = tokens[-1]
            tokens[-1] = TimedToken(last.id, last.step, last.time_s, last.text + tail)
        st.finished = True
        return SessionUpdate(tuple(tokens), finished=True)

    # ---- internals --------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Run the eager encoder's long chunk (files, bursts) once so that its kernels are compiled
        and tuned now rather than on the first utterance; then clear the state. (The silent
        prefix runs the prompt's eager shape next; the graphs ran the step's.)"""
        st = self.state
        n_mels = self.model.config.encoder.n_mels
        mel = torch.zeros(
            1, n_mels, MAX_CHUNK_TOKENS * MEL_FRAMES_PER_TOKEN, device=self._device, dtype=self._dtype
        )
        with torch.no_grad():
            self.model.embed_audio(mel, st.encoder)
        st.encoder.reset()

    def _start(self) -> None:
        """Every stream begins with the left pad of silence: the positions that hear nothing else
        (their mel frames end inside it) are encoded and decoded now, with the prompt's tokens."""
        self._advance(np.zeros(N_LEFT_PAD_TOKENS * SAMPLES_PER_TOKEN, np.float32), limit=None)
        n = min(self.state.n_embedded, self.config.n_prompt_tokens - 1)  # the last emits a token
        if n > 0:
            with torch.no_grad():
                self._decode_prompt(n)

    def _snapshot(self) -> dict[str, object]:
        st = self.state
        assert st.last_token == -1, "the silent prefix is taken before any token"
        return {
            "mel": copy.deepcopy(st.mel),
            "encoder": st.encoder.snapshot(),
            "decoder": st.decoder.cache.snapshot(),  # the slots of the positions decoded: a few MB
            "audio": [a.clone() for a in st.audio_pending],
            "n_embedded": st.n_embedded,
            "n_decoded": st.n_decoded,
        }

    def _restore(self, snap: dict[str, object]) -> None:
        st = self.state
        mel, encoder, decoder = snap["mel"], snap["encoder"], snap["decoder"]
        audio, n_embedded, n_decoded = snap["audio"], snap["n_embedded"], snap["n_decoded"]
        assert isinstance(mel, FrameWindows) and isinstance(encoder, dict) and isinstance(decoder, dict)
        assert isinstance(audio, list) and isinstance(n_embedded, int) and isinstance(n_decoded, int)
        st.mel = copy.deepcopy(mel)
        st.encoder.restore(encoder)
        st.decoder.cache.restore(decoder)
        st.audio_pending[:] = [a.clone() for a in audio]
        st.n_embedded, st.n_decoded = n_embedded, n_decoded

    def _advance(self, samples: np.ndarray, limit: int | None) -> list[TimedToken]:
        """Push samples through mel -> encoder -> decoder. `limit` caps the positions (flush)."""
        st = self.state
        n_ready = st.mel.push(samples) // MEL_FRAMES_PER_TOKEN
        if limit is not None:
            # The reference never runs the very last position of a flushed stream.
            n_ready = min(n_ready, limit - 1 - st.n_embedded)
        emitted: list[TimedToken] = []
        n_prompt = self.config.n_prompt_tokens
        with torch.no_grad():
            while n_ready > 0 and not st.finished:
                # Graphs after the prompt; in it, positions that arrive one at a time (live audio).
                prompt_step = n_ready == 1 and st.n_embedded == st.n_decoded
                if self.graph is not None and (st.n_decoded >= n_prompt or prompt_step):
                    if n_ready == 1 or self.bulk_graph is None:
                        emitted.extend(self._graph_step())
                        n_ready -= 1
                    else:
                        count = min(MAX_CHUNK_TOKENS, n_ready)
                        audio = self.model.embed_audio(self._pop_mel(count), st.encoder)  # [1, n, dim]
                        st.n_embedded += count
                        n_ready -= count
                        emitted.extend(self._bulk_steps(audio))
                    continue
                count = min(MAX_CHUNK_TOKENS, n_ready)
                if self.graph is not None:
                    count = min(count, n_prompt - st.n_embedded)  # after the prompt, graphs take over
                st.audio_pending.append(
                    self.model.embed_audio(self._pop_mel(count), st.encoder)
                )  # [1, count, dim]
                st.n_embedded += count
                n_ready -= count
                emitted.extend(self._decode_until(st.n_embedded))
        return [t for t in emitted if t.id != EOS_ID]

    def _pop_mel(self, n_positions: int) -> torch.Tensor:
        """The next n positions' mel frames as [1, n_mels, 8n] on the model's device."""
        n = n_positions * MEL_FRAMES_PER_TOKEN
        segment = torch.from_numpy(self.state.mel.take(n)).to(self._mel_device)
        return frames_to_log_mel(segment, n).to(self._device, self._dtype)[None]

    def _graph_step(self) -> list[TimedToken]:
        """One position in the step's graph: in the prompt, its token fed and (but at its last
        position) no token out; the first after it fed the token the prompt chose."""
        st = self.state
        assert self.graph is not None and st.n_embedded == st.n_decoded
        n_prompt = self.config.n_prompt_tokens
        feed = None
        if st.n_decoded < n_prompt:
            feed = self._prompt[0, st.n_decoded : st.n_decoded + 1]
        elif st.n_decoded == n_prompt:  # the prompt's last position may have run eagerly
            feed = torch.tensor([st.last_token], device=self._device)
        # The graph computes the position's log-mel from the samples of its 8 frames' windows.
        self.graph.run(self.state.mel.take(MEL_FRAMES_PER_TOKEN)[None], feed)
        st.n_embedded += 1
        st.n_decoded += 1
        if st.n_decoded < n_prompt:
            return []
        return [self._emit(self.graph.tokens_on_host()[0], step=st.n_decoded - 1)]

    def _bulk_steps(self, audio: torch.Tensor) -> list[TimedToken]:
        """Decoder-only graph replays over audio vectors [1, n, dim]; tokens read back once."""
        st = self.state
        assert self.bulk_graph is not None and st.n_embedded == st.n_decoded + audio.shape[1]
        last = torch.tensor([st.last_token], device=self._device)
        out: list[TimedToken] = []
        for token in self.bulk_graph.run_many(audio, last)[0].tolist():
            st.n_decoded += 1
            out.append(self._emit(token, step=st.n_decoded - 1))
            if st.finished:
                break
        return out

    def _take_audio(self, n: int) -> torch.Tensor:
        """Pop the next n pending audio vectors: [1, n, dim]."""
        st = self.state
        pending = torch.cat(st.audio_pending, dim=1) if len(st.audio_pending) > 1 else st.audio_pending[0]
        taken, rest = pending[:, :n], pending[:, n:]
        st.audio_pending[:] = [rest] if rest.shape[1] else []
        return taken

    def _decode_prompt(self, end: int) -> torch.Tensor:
        """The prompt's positions from the next undecoded one up to `end`, together, with their
        pending audio vectors -> the logits of the last [1, V]."""
        st = self.state
        ids = self._prompt[:, st.n_decoded : end]
        logits = self.model.decode(ids, self._take_audio(ids.shape[1]), st.decoder)
        st.n_decoded = end
        return logits

    def _decode_until(self, n_positions: int) -> list[TimedToken]:
        st, cfg = self.state, self.config
        out: list[TimedToken] = []
        n_prompt = cfg.n_prompt_tokens
        if st.n_decoded < n_prompt:  # the rest of the prompt, together (its silent part ran at start)
            if n_positions < n_prompt:
                return out
            logits = self._decode_prompt(n_prompt)
            out.append(self._emit(int(logits.argmax(-1)[0]), step=n_prompt - 1))
        while st.n_decoded < n_positions and not st.finished:
            ids = torch.tensor([[st.last_token]], device=self._device)
            logits = self.model.decode(ids, self._take_audio(1), st.decoder)
            out.append(self._emit(int(logits.argmax(-1)[0]), step=st.n_decoded))
            st.n_decoded += 1
        return out

    def _emit(self, token: int, step: int) -> TimedToken:
        st = self.state
        st.last_token = token
        if token == EOS_ID and self.config.stop_at_eos:
            st.finished = True
            return TimedToken(token, step, 0.0, "")
        time_s = max(0.0, (step + 1 - N_LEFT_PAD_TOKENS) * SAMPLES_PER_TOKEN / SAMPLE_RATE)
        # A model whose vocabulary outgrows its tokenizer (a mismatched tekken.json) emits ids
        # with no text; they stay in the token list.
        text = self.detokenizer.push(token) if token < self.tokenizer.vocab_size else ""
        return TimedToken(token, step, time_s, text)
