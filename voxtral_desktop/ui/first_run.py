"""The first-run dialog: open a model file or folder, or download and convert the official one."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from voxtral_desktop.ui.download import OFFICIAL_REPO, WeightsJob
from voxtral_desktop.ui.events import DownloadProgress

log = logging.getLogger(__name__)

_STAGES = {"download": "Downloading", "verify": "Verifying", "convert": "Converting to Q4"}


class FirstRunDialog(QDialog):
    """`chosen_path` holds the model path once the dialog is accepted."""

    job_started = Signal()

    def __init__(self, parent: QWidget | None = None, job: WeightsJob | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a Voxtral model")
        self.setObjectName("firstRunDialog")
        self.chosen_path = ""
        self._job = job
        self._thread: QThread | None = None

        intro = QLabel(
            "Voxtral Desktop needs the Voxtral Mini 4B Realtime model. Open a model you already have "
            "(a .gguf file, or a folder with params.json, consolidated.safetensors and tekken.json), "
            f"or download the official weights ({OFFICIAL_REPO}, about 9 GB) and convert them to a "
            "2.5 GB Q4 file on this computer. Nothing is downloaded unless you ask.",
        )
        intro.setWordWrap(True)
        self.open_file_button = QPushButton("Open model file…")
        self.open_dir_button = QPushButton("Open model folder…")
        self.download_button = QPushButton("Download and convert")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.progress.setObjectName("downloadProgress")
        self.progress.hide()
        self.status = QLabel()
        self.status.setObjectName("downloadStatus")
        self.status.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.open_file_button)
        row.addWidget(self.open_dir_button)
        row.addWidget(self.download_button)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.cancel_button)

        self.open_file_button.clicked.connect(self._open_file)
        self.open_dir_button.clicked.connect(self._open_dir)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self._cancel)

    def choose(self, path: str) -> None:
        """Accept `path` as the model (the worker validates it when it loads)."""
        self.chosen_path = path
        self.accept()

    def start_download(self) -> None:
        job = self._job or WeightsJob()
        self._job = job
        self._thread = QThread(self)
        job.moveToThread(self._thread)
        self._thread.started.connect(job.run)
        job.progress.connect(self._on_progress)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        for b in (self.open_file_button, self.open_dir_button, self.download_button):
            b.setEnabled(False)
        self.progress.show()
        self.progress.setRange(0, 0)
        self.status.setText("Checking the Hugging Face cache…")
        self._thread.start()
        self.job_started.emit()

    # ---- internals ----------------------------------------------------------------------------
    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model file", str(Path.home()), "GGUF models (*.gguf);;All files (*)"
        )
        if path:
            self.choose(path)

    def _open_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open model folder", str(Path.home()))
        if path:
            self.choose(path)

    def _on_progress(self, p: DownloadProgress) -> None:
        if p.total > 0:
            # QProgressBar holds an int: count in MiB so 9 GB fit.
            self.progress.setRange(0, max(1, p.total >> 20))
            self.progress.setValue(p.done >> 20)
        self.status.setText(
            f"{_STAGES.get(p.stage, p.stage)} {p.detail}: {p.done / 2**30:.2f} of {p.total / 2**30:.2f} GB"
        )

    def _on_succeeded(self, path: str) -> None:
        self._stop_thread()
        self.status.setText(f"Model ready: {path}")
        self.choose(path)

    def _on_failed(self, message: str) -> None:
        self._stop_thread()
        self.progress.hide()
        self.status.setText(message)
        for b in (self.open_file_button, self.open_dir_button, self.download_button):
            b.setEnabled(True)
        self._job = None

    def _cancel(self) -> None:
        if self._job is not None and self._thread is not None and self._thread.isRunning():
            self._job.cancel()  # the job reports `failed` with "cancelled"
            return
        self.reject()

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(5000)
            self._thread = None
