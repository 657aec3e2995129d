"""The first-run dialog and the weights job, with the Hub and the converter faked (no network)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from voxtral_desktop.errors import ModelFileError
from voxtral_desktop.ui import download
from voxtral_desktop.ui.download import NATIVE_FILES, Cancelled, WeightsJob, fetch_official_weights
from voxtral_desktop.ui.events import DownloadProgress
from voxtral_desktop.ui.first_run import FirstRunDialog

TIMEOUT_MS = 10_000


def test_open_a_model_path(qtbot: QtBot) -> None:
    dialog = FirstRunDialog()
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.accepted):
        dialog.choose("/models/voxtral.gguf")
    assert dialog.chosen_path == "/models/voxtral.gguf"


def _fake_fetch(gate: threading.Event | None = None) -> Any:
    def fetch(report: Any, cancel: threading.Event) -> Path:
        for done in range(0, 101, 25):
            if gate is not None:
                gate.wait(5)
            if cancel.is_set():
                raise Cancelled("download cancelled; it resumes where it stopped next time")
            report(DownloadProgress("download", done << 20, 100 << 20, "consolidated.safetensors"))
        return Path("/cache/snapshot")

    return fetch


def _fake_convert(src: Path, out: Path, report: Any, cancel: threading.Event) -> Path:
    assert src == Path("/cache/snapshot")
    report(DownloadProgress("convert", 1 << 30, 2 << 30, out.name))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"GGUF")
    return out


def test_download_and_convert_shows_progress_and_returns_the_model(qtbot: QtBot, tmp_path: Path) -> None:
    job = WeightsJob(tmp_path / "models" / "v.gguf", fetch=_fake_fetch(), convert=_fake_convert)
    dialog = FirstRunDialog(job=job)
    qtbot.addWidget(dialog)
    seen: list[DownloadProgress] = []
    job.progress.connect(seen.append)
    with qtbot.waitSignal(dialog.accepted, timeout=TIMEOUT_MS):
        dialog.download_button.click()
    assert dialog.chosen_path == str(tmp_path / "models" / "v.gguf")
    assert [p.stage for p in seen] == ["download"] * 5 + ["convert"]
    assert dialog.progress.maximum() == 2048 and dialog.progress.value() == 1024  # MiB
    # A second run finds the converted file and downloads nothing.
    again = WeightsJob(
        tmp_path / "models" / "v.gguf",
        fetch=lambda *a: pytest.fail("downloaded again"),
        convert=_fake_convert,
    )
    with qtbot.waitSignal(again.succeeded, timeout=TIMEOUT_MS):
        again.run()


def test_cancel_and_failure_are_shown_and_the_dialog_stays_usable(qtbot: QtBot, tmp_path: Path) -> None:
    gate = threading.Event()
    job = WeightsJob(tmp_path / "v.gguf", fetch=_fake_fetch(gate), convert=_fake_convert)
    dialog = FirstRunDialog(job=job)
    qtbot.addWidget(dialog)
    dialog.start_download()
    assert not dialog.download_button.isEnabled()
    dialog.cancel_button.click()  # cancel while the job runs: the dialog stays open
    gate.set()
    qtbot.waitUntil(lambda: "cancelled" in dialog.status.text(), timeout=TIMEOUT_MS)
    assert dialog.download_button.isEnabled() and dialog.result() != FirstRunDialog.DialogCode.Accepted
    assert dialog.chosen_path == ""


class _FakeHub:
    """Stands in for huggingface_hub: a cache, remote files, and byte progress."""

    def __init__(
        self, tmp: Path, cached: bool, payload: bytes = b"x" * 1000, etag: str | None = None
    ) -> None:
        self.tmp, self.cached, self.payload = tmp, cached, payload
        import hashlib

        self.etag = etag if etag is not None else hashlib.sha256(payload).hexdigest()
        self.downloads: list[str] = []

    def hf_hub_download(
        self, repo: str, name: str, local_files_only: bool = False, tqdm_class: Any = None
    ) -> str:
        path = self.tmp / name
        if local_files_only:
            if not self.cached:
                raise FileNotFoundError(name)
            return str(path)
        bar = tqdm_class(total=len(self.payload), initial=100)  # resuming an .incomplete file
        bar.update(len(self.payload) - 100)
        path.write_bytes(self.payload)
        self.downloads.append(name)
        return str(path)

    def hf_hub_url(self, repo: str, name: str) -> str:
        return f"https://hub/{repo}/{name}"

    def get_hf_file_metadata(self, url: str) -> Any:
        etag = self.etag if url.endswith(".safetensors") else "abc123"
        return type("Meta", (), {"size": len(self.payload), "etag": f'"{etag}"'})()


def test_fetch_reuses_the_cache_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _FakeHub(tmp_path, cached=True)
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", hub)
    assert fetch_official_weights(lambda p: None, threading.Event()) == tmp_path
    assert hub.downloads == []


def test_fetch_downloads_resumes_and_verifies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _FakeHub(tmp_path, cached=False)
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", hub)
    seen: list[DownloadProgress] = []
    assert fetch_official_weights(seen.append, threading.Event()) == tmp_path
    assert hub.downloads == list(NATIVE_FILES)
    downloads = [p for p in seen if p.stage == "download"]
    assert downloads[0].done == 100  # the resumed part counts from the start
    assert downloads[-1].done == downloads[-1].total == 3000
    assert any(p.stage == "verify" for p in seen)


def test_fetch_rejects_a_corrupt_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub = _FakeHub(tmp_path, cached=False, etag="0" * 64)
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", hub)
    with pytest.raises(ModelFileError, match="SHA-256 mismatch"):
        fetch_official_weights(lambda p: None, threading.Event())
    assert not (tmp_path / "consolidated.safetensors").exists()


def test_default_model_path_is_in_user_data(tmp_path: Path) -> None:
    assert (
        download.default_model_path() == tmp_path / "data" / "voxtral-desktop" / "models" / download.GGUF_NAME
    )
