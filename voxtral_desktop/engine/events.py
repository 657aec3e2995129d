"""Plain frozen records the engine hands to its callers (the CLI, the app's worker thread).

They carry only Python values (no tensors), so they can cross a Qt signal as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TimedToken:
    """One id the decoder emitted, with where in the audio it was emitted.

    `time_s` is the end of the (unpadded) audio the model had heard when it chose this token;
    the speech the token transcribes lies about one delay earlier.
    """

    id: int
    step: int  # decoder position whose logits produced the token
    time_s: float
    text: str  # the text this token completed ('' for control ids or an unfinished UTF-8 character)


@dataclass(frozen=True)
class SessionUpdate:
    """What one `feed` or `flush` produced."""

    tokens: tuple[TimedToken, ...] = ()
    finished: bool = False  # EOS was emitted or the stream was flushed: the session needs `reset`

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded, for logs, the CLI's stderr and the app's status line."""

    source: str  # e.g. "Q4_0 GGUF (voxtral-desktop) /path/model.gguf"
    device: str  # e.g. "cpu (float32): no CUDA or MPS GPU found"
    n_parameters: int
    languages: tuple[str, ...] = field(default=())
