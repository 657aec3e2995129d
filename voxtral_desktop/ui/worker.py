"""The engine worker: one QThread owns the model, its streaming session and the audio source.

The GUI thread talks to it only through queued signals carrying plain values, and gets back
the frozen records of `ui.events`. While an utterance is recorded a timer (every
`PUMP_INTERVAL_MS`) moves the new samples from the source's ring buffer through the 16 kHz
resampler into `session.feed`; each batch of tokens becomes one `TextDelta`. If the model falls
behind real time the next tick simply reads more, so nothing is dropped. The GUI thread never
touches a tensor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from voxtral_desktop.config import SAMPLE_RATE, StreamConfig
from voxtral_desktop.engine.events import ModelInfo, SessionUpdate
from voxtral_desktop.errors import VoxtralError
from voxtral_desktop.platform.audio_capture import AudioSource, Resampler16k, write_float_wav
from voxtral_desktop.platform.base import AudioDeviceError
from voxtral_desktop.ui.events import AudioStatus, ModelState, ModelStatus, TextDelta, UtteranceEnded

log = logging.getLogger(__name__)

PUMP_INTERVAL_MS = 40
RECOVER_INTERVAL_MS = 2000


class SessionLike(Protocol):
    @property
    def finished(self) -> bool: ...

    def feed(self, pcm: np.ndarray) -> SessionUpdate: ...

    def flush(self) -> SessionUpdate: ...

    def reset(self) -> None: ...


class EngineLike(Protocol):
    info: ModelInfo

    @property
    def default_delay_ms(self) -> int: ...

    def session(self, config: StreamConfig | None = None) -> SessionLike: ...


EngineLoader = Callable[[str, str, str], EngineLike]  # (model path, compute device, Q4 kernel) -> engine


def load_real_engine(path: str, device: str, kernel: str) -> EngineLike:
    from voxtral_desktop.engine.engine import Engine  # imports torch: only in the worker thread

    return Engine.load(path, device=device, kernel=kernel)  # type: ignore[return-value]


@dataclass
class UtteranceText:
    """Shapes the streamed text the way a transcript is written (`text.strip()`), append-only:
    whitespace before the first word is dropped, and whitespace is held back until a later word
    follows it, so an utterance never ends in (or types) a dangling space or newline."""

    started: bool = False
    pending: str = ""  # whitespace not typed yet

    def push(self, text: str, *, final: bool = False) -> str:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        combined = self.pending + text
        out = combined.rstrip()
        self.pending = "" if final else combined[len(out) :]
        return out


@dataclass
class _Utterance:
    utterance_id: int
    pos: int  # next ring-buffer sample to read
    resampler: Resampler16k
    n_samples: int = 0  # 16 kHz samples fed
    parts: list[str] = field(default_factory=list)
    shaper: UtteranceText = field(default_factory=UtteranceText)
    audio: list[np.ndarray] | None = None  # what was fed, when it is to be saved


class EngineWorker(QObject):
    model_state = Signal(object)  # ModelState
    recording_started = Signal(int)  # the utterance id, once audio is being read for it
    text_delta = Signal(object)  # TextDelta
    utterance_ended = Signal(object)  # UtteranceEnded
    audio_status = Signal(object)  # AudioStatus

    def __init__(
        self,
        loader: EngineLoader = load_real_engine,
        pump_interval_ms: int = PUMP_INTERVAL_MS,
        recover_interval_ms: int = RECOVER_INTERVAL_MS,
        save_audio_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self._save_audio_dir = save_audio_dir  # keep each utterance's 16 kHz audio (demos, tests)
        self._loader = loader
        self._engine: EngineLike | None = None
        self._session: SessionLike | None = None
        self._source: AudioSource | None = None
        self._utt: _Utterance | None = None
        self._audio_lost = False
        self._pump = QTimer(self)
        self._pump.setInterval(pump_interval_ms)
        self._pump.timeout.connect(self._on_pump)
        self._recover = QTimer(self)
        self._recover.setInterval(recover_interval_ms)
        self._recover.timeout.connect(self._on_recover)

    # ---- model --------------------------------------------------------------------------------
    @Slot(str, str, str, int)
    def load_model(self, path: str, device: str, kernel: str, delay_ms: int) -> None:
        if self._utt is not None:
            self._finish("the model was changed while recording")
        self._engine = self._session = None
        if not path:
            self.model_state.emit(ModelState(ModelStatus.NONE, "no model chosen yet"))
            return
        self.model_state.emit(ModelState(ModelStatus.LOADING, path))
        try:
            engine = self._loader(path, device, kernel)
            delay = delay_ms or engine.default_delay_ms
            session = engine.session(StreamConfig(delay_ms=delay))
        except VoxtralError as exc:
            log.warning("model %s failed to load: %s", path, exc)
            self.model_state.emit(ModelState(ModelStatus.FAILED, str(exc)))
            return
        except Exception as exc:  # a bug, but the app must stay up and say what happened
            log.exception("unexpected error loading %s", path)
            self.model_state.emit(
                ModelState(ModelStatus.FAILED, f"cannot load {path}: {type(exc).__name__}: {exc}")
            )
            return
        self._engine, self._session = engine, session
        self.model_state.emit(ModelState(ModelStatus.READY, path, engine.info, delay))

    # ---- audio --------------------------------------------------------------------------------
    @Slot(object)
    def set_audio_source(self, source: AudioSource | None) -> None:
        if self._utt is not None:
            self._finish("the input device was changed while recording")
        if self._source is not None:
            self._source.stop()
        self._source = source
        self._recover.stop()
        if source is None:
            return
        try:
            source.start()
        except AudioDeviceError as exc:
            self._audio_lost = True
            self.audio_status.emit(AudioStatus(False, source.name, str(exc)))
            self._recover.start()
            return
        self._audio_lost = False
        self.audio_status.emit(AudioStatus(True, source.name))

    # ---- utterances ---------------------------------------------------------------------------
    @Slot(int)
    def begin_utterance(self, utterance_id: int) -> None:
        if self._utt is not None:
            self._finish("")
        problem = ""
        if self._session is None:
            problem = "no model is loaded: choose one first (the model status says why)"
        elif self._source is None or self._audio_lost:
            problem = "no microphone is available"
        if problem:
            self.utterance_ended.emit(UtteranceEnded(utterance_id, "", 0.0, problem))
            return
        assert self._source is not None
        start = self._source.begin_utterance()
        self._utt = _Utterance(utterance_id, start, Resampler16k(self._source.sample_rate))
        if self._save_audio_dir is not None:
            self._utt.audio = []
        self._pump.start()
        log.info("recording utterance %d from %s", utterance_id, self._source.name)
        self.recording_started.emit(utterance_id)

    @Slot()
    def end_utterance(self) -> None:
        if self._utt is None:
            return
        self._on_pump()  # what arrived since the last tick
        if self._utt is not None:
            self._finish("")

    @Slot()
    def shutdown(self) -> None:
        if self._utt is not None:
            self._finish("the app is closing")
        self._pump.stop()
        self._recover.stop()
        if self._source is not None:
            self._source.stop()
            self._source = None

    # ---- internals ----------------------------------------------------------------------------
    def _on_pump(self) -> None:
        u, source = self._utt, self._source
        if u is None or source is None:
            self._pump.stop()
            return
        try:
            source.check()
        except AudioDeviceError as exc:
            self._audio_lost = True
            self.audio_status.emit(AudioStatus(False, source.name, str(exc)))
            self._finish(str(exc))
            self._recover.start()
            return
        samples, u.pos = source.ring.read(u.pos)
        if samples.size:
            self._feed(u.resampler.push(samples))

    def _feed(self, pcm: np.ndarray, *, final: bool = False) -> None:
        u, session = self._utt, self._session
        assert u is not None and session is not None
        updates: list[SessionUpdate] = []
        if pcm.size:
            if session.finished:  # the model ended the stream (EOS) while the key is still down
                log.info("the stream ended early; starting a new one for the rest of the utterance")
                session.reset()
            u.n_samples += pcm.size
            if u.audio is not None:
                u.audio.append(pcm)
            updates.append(session.feed(pcm))
        if final:
            updates.append(session.flush())
        tokens = tuple(t for up in updates for t in up.tokens)
        text = u.shaper.push("".join(t.text for t in tokens), final=final)
        if text or final:
            u.parts.append(text)
            self.text_delta.emit(TextDelta(u.utterance_id, text, tokens, u.n_samples / SAMPLE_RATE, final))

    def _finish(self, problem: str) -> None:
        """Flush the session and end the utterance (the text so far is never dropped)."""
        u = self._utt
        assert u is not None
        self._pump.stop()
        try:
            self._feed(u.resampler.flush(), final=True)
        except Exception:  # a failing flush must still end the utterance with the text so far
            log.exception("flushing the stream failed")
            problem = problem or "recognition failed at the end of the utterance; the text so far is kept"
        self._utt = None
        if u.audio is not None and self._save_audio_dir is not None:
            path = self._save_audio_dir / f"utterance-{u.utterance_id}.wav"
            write_float_wav(path, np.concatenate(u.audio) if u.audio else np.zeros(0, np.float32))
            log.info("saved the utterance's audio to %s", path)
        self.utterance_ended.emit(
            UtteranceEnded(u.utterance_id, "".join(u.parts), u.n_samples / SAMPLE_RATE, problem)
        )
        started = time.perf_counter()
        if self._session is not None:
            self._session.reset()  # now, so the next key press starts without this cost
        log.debug("session reset in %.3f s", time.perf_counter() - started)

    def _on_recover(self) -> None:
        source = self._source
        if source is None:
            self._recover.stop()
            return
        if source.recover():
            self._audio_lost = False
            self._recover.stop()
            self.audio_status.emit(AudioStatus(True, source.name, f"microphone {source.name} is back"))
