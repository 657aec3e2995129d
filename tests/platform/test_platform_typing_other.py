"""The backends CI cannot run for real (Wayland, macOS, Windows): their pure parts, and the
Wayland tools driven through fake executables that record what they were asked to type."""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from pathlib import Path

import pytest

from voxtral_desktop.platform import autostart
from voxtral_desktop.platform.base import InjectionError
from voxtral_desktop.platform.typing import NullInjector, create_injector
from voxtral_desktop.platform.typing.macos import utf16_chunks
from voxtral_desktop.platform.typing.wayland import (
    DotoolInjector,
    WtypeInjector,
    YdotoolInjector,
    dotool_commands,
)
from voxtral_desktop.platform.typing.windows import (
    INPUT,
    KEYEVENTF_KEYUP,
    KEYEVENTF_UNICODE,
    VK_RETURN,
    build_inputs,
)


def _fake_tool(tmp_path: Path, name: str, script: str) -> str:
    exe = tmp_path / name
    exe.write_text(f"#!{sys.executable}\n{script}", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_wtype_gets_the_text_as_one_argument(tmp_path: Path) -> None:
    log = tmp_path / "wtype.log"
    exe = _fake_tool(
        tmp_path,
        "wtype",
        f"import sys\nopen({str(log)!r}, 'a', encoding='utf-8').write(repr(sys.argv[1:]) + '\\n')\n",
    )
    inj = WtypeInjector(exe)
    inj.type_text("café 日本\nß")
    assert log.read_text(encoding="utf-8") == repr(["--", "café 日本\nß"]) + "\n"


def test_wtype_failure_is_reported(tmp_path: Path) -> None:
    exe = _fake_tool(
        tmp_path,
        "wtype",
        "import sys\n"
        "sys.stderr.write('Compositor does not support the virtual keyboard protocol\\n')\n"
        "sys.exit(1)\n",
    )
    with pytest.raises(InjectionError, match="virtual keyboard protocol"):
        WtypeInjector(exe).type_text("x")


def test_dotool_is_one_long_lived_process(tmp_path: Path) -> None:
    log = tmp_path / "dotool.log"
    exe = _fake_tool(
        tmp_path,
        "dotool",
        f"import sys, os\nout = open({str(log)!r}, 'a', encoding='utf-8')\n"
        "out.write(f'pid {os.getpid()}\\n')\n"
        "for line in sys.stdin:\n    out.write(line); out.flush()\n",
    )
    inj = DotoolInjector(exe)
    inj.type_text("héllo ")
    inj.type_text("wörld\nnext")
    inj.close()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len([line for line in lines if line.startswith("pid ")]) == 1
    assert lines[1:] == ["type héllo ", "type wörld", "key enter", "type next"]


def test_dotool_commands() -> None:
    assert dotool_commands("a\n\nb") == "type a\nkey enter\nkey enter\ntype b\n"


def test_ydotool_refuses_non_ascii_instead_of_typing_garbage(tmp_path: Path) -> None:
    exe = _fake_tool(tmp_path, "ydotool", "import sys\n")
    with pytest.raises(InjectionError, match="only US-keyboard ASCII"):
        YdotoolInjector(exe).type_text("café")
    YdotoolInjector(exe).type_text("cafe")


def test_missing_tools_and_unknown_methods(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tools at all
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with pytest.raises(
        InjectionError, match="wtype is not installed; dotool is not installed; ydotool is not installed"
    ):
        create_injector("auto")
    with pytest.raises(InjectionError, match="unknown typing method"):
        create_injector("telepathy")
    assert isinstance(create_injector("none"), NullInjector)
    monkeypatch.delenv("WAYLAND_DISPLAY")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    with pytest.raises(InjectionError, match="no display"):
        create_injector("auto")
    with pytest.raises(InjectionError, match="only available on macOS"):
        create_injector("quartz")
    with pytest.raises(InjectionError, match="only available on Windows"):
        create_injector("sendinput")


def test_macos_chunks_respect_utf16_units_and_surrogates() -> None:
    text = "a" * 19 + "😀" + "b\nc"
    chunks = utf16_chunks(text)
    assert chunks == ["a" * 19, "😀b", "\n", "c"]
    assert all(len(c.encode("utf-16-le")) // 2 <= 20 for c in chunks)
    assert "".join(chunks) == text


def test_windows_inputs_are_unicode_key_pairs() -> None:
    records = build_inputs("é😀\n")
    # é: down+up; 😀: two surrogates, each down+up; newline: VK_RETURN down+up
    assert len(records) == 2 + 4 + 2
    scans = [r.u.ki.wScan for r in records[:6:2]]
    assert scans == [0xE9, 0xD83D, 0xDE00]
    assert all(r.u.ki.dwFlags & KEYEVENTF_UNICODE for r in records[:6])
    assert [bool(r.u.ki.dwFlags & KEYEVENTF_KEYUP) for r in records[:2]] == [False, True]
    assert records[6].u.ki.wVk == VK_RETURN
    # The union is as large as Windows' INPUT (40 bytes on 64-bit, 28 on 32-bit).
    assert ctypes.sizeof(INPUT) == (40 if ctypes.sizeof(ctypes.c_void_p) == 8 else 28)


def test_xdg_autostart_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform != "linux":
        pytest.skip("the XDG entry is the Linux variant")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = autostart.set_start_at_login(
        True, ["/opt/my app/python", "-m", "voxtral_desktop.ui", "--minimised"]
    )
    assert path == tmp_path / "autostart" / "voxtral-desktop.desktop"
    text = path.read_text(encoding="utf-8")
    assert 'Exec="/opt/my app/python" -m voxtral_desktop.ui --minimised\n' in text
    assert autostart.starts_at_login()
    autostart.set_start_at_login(False)
    assert not path.exists() and not autostart.starts_at_login()
    assert os.access(tmp_path, os.W_OK)
