"""Getting the official weights: download from the Hugging Face Hub, verify, convert to Q4.

Only runs when the user asks for it in the first-run dialog. Files go through the normal
Hugging Face cache (`HF_HOME`), so a model another tool already downloaded is reused without
any network access, and an interrupted download resumes from its `.incomplete` file. Each
downloaded file is checked against the SHA-256 the Hub publishes for it (the LFS etag). The Q4
GGUF is written into the user data directory by `convert_native_to_gguf`.

`WeightsJob` runs the whole thing on a QThread and reports `DownloadProgress` records.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import platformdirs
from PySide6.QtCore import QObject, Signal, Slot

from voxtral_desktop.errors import ModelFileError, VoxtralError
from voxtral_desktop.ui.events import DownloadProgress

log = logging.getLogger(__name__)

OFFICIAL_REPO = "mistralai/Voxtral-Mini-4B-Realtime-2602"
NATIVE_FILES = ("params.json", "tekken.json", "consolidated.safetensors")
GGUF_NAME = "voxtral-mini-4b-realtime-q4_0.gguf"

Report = Callable[[DownloadProgress], None]


class Cancelled(VoxtralError):
    """The user cancelled the download; what was fetched stays in the cache for next time."""


def default_model_path() -> Path:
    return Path(platformdirs.user_data_dir("voxtral-desktop", appauthor=False)) / "models" / GGUF_NAME


def _progress_class(
    report: Report, detail: str, base: list[int], total_all: list[int], cancel: threading.Event
) -> type:
    """A tqdm look-alike that huggingface_hub drives with the bytes of one file."""

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = int(kwargs.get("initial") or 0)  # >0 when resuming an .incomplete file
            self.total = int(kwargs.get("total") or 0)
            self._emit()

        def update(self, n: float | None = 1) -> None:
            if cancel.is_set():
                raise Cancelled("download cancelled; it resumes where it stopped next time")
            self.n += int(n or 0)
            self._emit()

        def _emit(self) -> None:
            report(
                DownloadProgress(
                    "download", base[0] + self.n, max(total_all[0], base[0] + self.total), detail
                )
            )

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def __getattr__(self, name: str) -> Callable[..., None]:  # refresh, close, set_description...
            return lambda *a, **k: None

    return _Bar


def fetch_official_weights(report: Report, cancel: threading.Event, repo: str = OFFICIAL_REPO) -> Path:
    """The folder holding the native checkpoint files, from the cache or the Hub."""
    import huggingface_hub as hf

    try:
        cached = [hf.hf_hub_download(repo, name, local_files_only=True) for name in NATIVE_FILES]
        log.info("using the weights already in the Hugging Face cache: %s", Path(cached[0]).parent)
        return Path(cached[0]).parent
    except Exception:  # not (fully) cached: download what is missing
        pass
    try:
        sizes = {name: _remote_size(hf, repo, name) for name in NATIVE_FILES}
        base, total = [0], [sum(s for s, _ in sizes.values())]
        paths = []
        for name in NATIVE_FILES:
            bar = _progress_class(report, name, base, total, cancel)
            paths.append(Path(hf.hf_hub_download(repo, name, tqdm_class=bar)))
            base[0] += sizes[name][0]
            _verify(paths[-1], sizes[name][1], report, cancel)
    except VoxtralError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"download from the Hugging Face Hub failed: {type(exc).__name__}: {exc}"
        ) from None
    return paths[0].parent


def _remote_size(hf: Any, repo: str, name: str) -> tuple[int, str]:
    meta = hf.get_hf_file_metadata(hf.hf_hub_url(repo, name))
    etag = str(meta.etag or "").strip('"')
    return int(meta.size or 0), etag


def _verify(path: Path, etag: str, report: Report, cancel: threading.Event) -> None:
    """LFS etags are the file's SHA-256; small (git) files have a git hash there instead."""
    if len(etag) != 64:
        return
    digest, done, total = hashlib.sha256(), 0, path.stat().st_size
    with path.open("rb") as f:
        while chunk := f.read(16 << 20):
            if cancel.is_set():
                raise Cancelled("verification cancelled")
            digest.update(chunk)
            done += len(chunk)
            report(DownloadProgress("verify", done, total, path.name))
    if digest.hexdigest() != etag:
        path.unlink(missing_ok=True)
        raise ModelFileError(
            f"{path.name} is corrupt (SHA-256 mismatch) and was deleted; try the download again"
        )


def convert_to_q4(src: Path, out: Path, report: Report, cancel: threading.Event) -> Path:
    from voxtral_desktop.weights.convert import convert_native_to_gguf

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled("conversion cancelled")
        report(DownloadProgress("convert", done, total, out.name))

    out.parent.mkdir(parents=True, exist_ok=True)
    return convert_native_to_gguf(src, out, progress=progress)[0]


Fetch = Callable[[Report, threading.Event], Path]
Convert = Callable[[Path, Path, Report, threading.Event], Path]


class WeightsJob(QObject):
    """Download (or reuse) then convert; move to a QThread and call `run`."""

    progress = Signal(object)  # DownloadProgress
    succeeded = Signal(str)  # the GGUF path
    failed = Signal(str)  # one line

    def __init__(
        self, out: Path | None = None, fetch: Fetch = fetch_official_weights, convert: Convert = convert_to_q4
    ) -> None:
        super().__init__()
        self.out = out or default_model_path()
        self._fetch, self._convert = fetch, convert
        self.cancel_event = threading.Event()

    @Slot()
    def run(self) -> None:
        if self.out.is_file():  # converted on an earlier run (the converter writes atomically)
            self.succeeded.emit(str(self.out))
            return
        try:
            src = self._fetch(self.progress.emit, self.cancel_event)
            path = self._convert(src, self.out, self.progress.emit, self.cancel_event)
        except VoxtralError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:
            log.exception("getting the weights failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.succeeded.emit(str(path))

    def cancel(self) -> None:
        self.cancel_event.set()
