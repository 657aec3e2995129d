"""`run_app(argv)`: build and run the desktop app.

    voxtral-desktop [--model PATH] [--input-file FILE] [--hotkey KEYS] [--mode hold|toggle]
                    [--typing METHOD] [--device auto|cpu|cuda|mps] [--minimised] [--toggle] [-v]

Command-line options override the saved settings for this run only. A second launch hands
"show" (or "toggle" with `--toggle`, for a desktop shortcut on Wayland) to the running app.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from voxtral_desktop.errors import VoxtralError
from voxtral_desktop.platform.audio_capture import (
    AudioSource,
    FileMicrophone,
    SoundDeviceMicrophone,
    list_input_devices,
)
from voxtral_desktop.platform.autostart import set_start_at_login
from voxtral_desktop.platform.base import TextInjector
from voxtral_desktop.platform.history import HistoryStore
from voxtral_desktop.platform.hotkeys import create_hotkey_listener
from voxtral_desktop.platform.typing import METHODS, create_injector
from voxtral_desktop.ui.clipboard import ClipboardBridge, ClipboardPasteInjector
from voxtral_desktop.ui.controller import Controller
from voxtral_desktop.ui.first_run import FirstRunDialog
from voxtral_desktop.ui.main_window import MainWindow
from voxtral_desktop.ui.settings import (
    DEVICES,
    KERNELS,
    PTT_MODES,
    AppSettings,
    load_settings,
    open_qsettings,
    save_settings,
)
from voxtral_desktop.ui.settings_dialog import SettingsDialog
from voxtral_desktop.ui.single_instance import InstanceServer, send_to_running
from voxtral_desktop.ui.tray import Tray, app_icon

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voxtral-desktop", description="Push-to-talk dictation into any window.")
    p.add_argument("--model", help="model file or folder for this run (default: the saved one)")
    p.add_argument("--device", choices=DEVICES, help="compute device for this run")
    p.add_argument("--kernel", choices=KERNELS, help="Q4 matmul for this run (reference: exact, slow)")
    p.add_argument(
        "--input-file", type=Path, metavar="FILE", help="replay FILE in real time as the microphone"
    )
    p.add_argument("--input-device", metavar="NAME", help="microphone for this run (default: the saved one)")
    p.add_argument(
        "--hotkey", metavar="KEYS", help="push-to-talk key for this run, e.g. ctrl+alt+space or F9"
    )
    p.add_argument("--mode", choices=PTT_MODES, help="hold the key, or press to start and again to stop")
    p.add_argument("--typing", choices=METHODS, help="how text reaches the focused window")
    p.add_argument("--delay-ms", type=int, help="transcription delay in ms (multiple of 80)")
    p.add_argument("--minimised", action="store_true", help="start in the tray")
    p.add_argument(
        "--save-audio",
        type=Path,
        metavar="DIR",
        help="keep each utterance's 16 kHz audio as DIR/utterance-N.wav",
    )
    p.add_argument("--toggle", action="store_true", help="start/stop dictation in the running app, then exit")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr (-vv: debug)")
    return p


def _overrides(args: argparse.Namespace, settings: AppSettings) -> AppSettings:
    pairs = {
        "model_path": args.model,
        "compute_device": args.device,
        "kernel": args.kernel,
        "input_device": args.input_device,
        "hotkey": args.hotkey,
        "ptt_mode": args.mode,
        "typing_method": args.typing,
        "delay_ms": args.delay_ms,
    }
    return dataclasses.replace(settings, **{k: v for k, v in pairs.items() if v is not None}).validated()


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("voxtral_desktop")
    if not any(getattr(h, "_voxtral_app", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._voxtral_app = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def make_injector_factory(method: str, bridge: ClipboardBridge) -> Callable[[], TextInjector]:
    def make() -> TextInjector:
        if method == "clipboard":
            return ClipboardPasteInjector(bridge, create_injector("xtest"))
        return create_injector(method)

    return make


class App:
    """Everything the running app holds, wired together."""

    def __init__(
        self,
        qapp: QApplication,
        args: argparse.Namespace,
        settings: AppSettings,
        store_path: Path | None = None,
    ) -> None:
        self.qapp, self.args = qapp, args
        self.qsettings = open_qsettings(store_path)
        self.saved = load_settings(self.qsettings)
        self.settings = settings
        self.history = HistoryStore()
        self.window = MainWindow(self.history)
        self.window.setWindowIcon(app_icon())
        self.bridge = ClipboardBridge()
        self.controller = Controller(
            self.window,
            self.history,
            settings,
            make_injector=make_injector_factory(settings.typing_method, self.bridge),
            make_hotkey=lambda spec: create_hotkey_listener(spec),
            save_audio_dir=args.save_audio,
        )
        self.tray: Tray | None = Tray() if Tray.available() else None
        self.server = InstanceServer()
        self.server.message.connect(self._on_message)
        self.server.listen()
        self.window.device_chosen.connect(self._on_device_chosen)
        self.window.settings_requested.connect(self._edit_settings)
        self.window.model_requested.connect(self._choose_model)
        self.window.close_requested.connect(self._on_window_closed)
        self.controller.recording_changed.connect(self._on_recording)
        if self.tray is not None:
            self.tray.toggle_requested.connect(self.controller.toggle_recording)
            self.tray.show_requested.connect(self.show_window)
            self.tray.quit_requested.connect(qapp.quit)
            self.tray.show()
        qapp.aboutToQuit.connect(self.controller.shutdown)

    def start(self) -> None:
        source = self._make_source(self.settings.input_device)
        if isinstance(source, FileMicrophone):
            self.window.set_devices([], "", fixed=f"File: {source.path.name} (plays when you talk)")
        else:
            try:
                devices = list_input_devices()
            except VoxtralError as exc:
                devices = []
                self.window.show_problem(str(exc))
            self.window.set_devices(devices, self.settings.input_device)
        self.controller.start(source)
        if not (self.settings.start_minimised or self.args.minimised) or self.tray is None:
            self.show_window()
        if not self.settings.model_path:
            QTimer.singleShot(0, self._choose_model)

    def show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _make_source(self, device: str) -> AudioSource:
        if self.args.input_file is not None:
            return FileMicrophone(self.args.input_file)
        return SoundDeviceMicrophone(device or None)

    def _save(self, **changes: object) -> None:
        self.saved = dataclasses.replace(self.saved, **changes)  # type: ignore[arg-type]
        save_settings(self.qsettings, self.saved)

    def _on_device_chosen(self, name: str) -> None:
        self._save(input_device=name)
        self.settings = self.controller.settings = dataclasses.replace(self.settings, input_device=name)
        self.controller.set_audio_source(self._make_source(name))

    def _choose_model(self) -> None:
        dialog = FirstRunDialog(self.window)
        dialog.accepted.connect(lambda: self._model_chosen(dialog.chosen_path))
        dialog.open()

    def _model_chosen(self, path: str) -> None:
        self._save(model_path=path)
        self.settings = self.controller.settings = dataclasses.replace(self.settings, model_path=path)
        self.controller.load_model(path)

    def _edit_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self.window)
        if dialog.exec() != SettingsDialog.DialogCode.Accepted:
            return
        new, old = dialog.edited(), self.settings
        self.settings = self.controller.settings = new
        fields = (
            "hotkey",
            "ptt_mode",
            "typing_method",
            "delay_ms",
            "compute_device",
            "language",
            "start_at_login",
            "start_minimised",
        )
        self._save(**{f: getattr(new, f) for f in fields})
        if new.hotkey != old.hotkey or new.ptt_mode != old.ptt_mode:
            self.controller.set_hotkey(new.hotkey)
        if (new.delay_ms, new.compute_device) != (old.delay_ms, old.compute_device):
            self.controller.load_model(new.model_path)
        if new.typing_method != old.typing_method:
            self.window.show_problem("The new typing method takes effect after a restart.")
        if new.start_at_login != old.start_at_login:
            try:
                set_start_at_login(new.start_at_login)
            except VoxtralError as exc:
                self.window.show_problem(str(exc))

    def _on_window_closed(self) -> None:
        if self.tray is None:
            self.qapp.quit()

    def _on_recording(self, recording: bool) -> None:
        if self.tray is not None:
            self.tray.set_recording(recording)

    def _on_message(self, message: str) -> None:
        if message == "toggle":
            self.controller.toggle_recording()
        elif message == "show":
            self.show_window()


def run_app(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    _configure_logging(args.verbose)
    qapp = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "voxtral-desktop"])
    assert isinstance(qapp, QApplication)
    qapp.setApplicationName("voxtral-desktop")
    qapp.setApplicationDisplayName("Voxtral Desktop")
    qapp.setWindowIcon(app_icon())
    if send_to_running("toggle" if args.toggle else "show"):
        log.info("handed over to the running instance")
        return 0
    if args.toggle:
        sys.stderr.write("voxtral-desktop: error: no running app to toggle\n")
        return 1
    try:
        settings = _overrides(args, load_settings(open_qsettings()))
    except VoxtralError as exc:
        sys.stderr.write(f"voxtral-desktop: error: {exc}\n")
        return 2
    app = App(qapp, args, settings)
    qapp.setQuitOnLastWindowClosed(app.tray is None)
    # Python runs signal handlers only between bytecodes: a timer lets SIGINT/SIGTERM through.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: qapp.quit())
    tick = QTimer()
    tick.start(200)
    tick.timeout.connect(lambda: None)
    app.start()
    return int(qapp.exec())


if __name__ == "__main__":
    raise SystemExit(run_app())
