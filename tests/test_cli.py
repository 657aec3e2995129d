"""The command line, run in-process through `main([...])` on a tiny random model."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from voxtral_desktop import cli
from voxtral_desktop.cli import main
from voxtral_desktop.config import SAMPLE_RATE

ERROR_PREFIX = "voxtral-desktop: error:"


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("tiny")
    assert main(["make-tiny", str(out)]) == 0
    return {"native": out / "native", "gguf": out / "tiny-q4.gguf"}


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Short files: a chirp-like tone, digital silence, a stereo 44.1 kHz file."""
    d = tmp_path_factory.mktemp("audio")
    t = np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * (300 + 400 * t) * t)
    t44 = np.arange(int(0.8 * 44100)) / 44100
    stereo = np.stack([0.2 * np.sin(2 * np.pi * 440 * t44), 0.2 * np.sin(2 * np.pi * 660 * t44)], axis=1)
    (d / "notes.txt").write_text("this is not audio\n", encoding="utf-8")
    return {
        "tone": write_wav(d / "tone.wav", tone),
        "silence": write_wav(d / "silence.wav", np.zeros(SAMPLE_RATE)),
        "stereo": _write_stereo(d / "stereo.wav", stereo, 44100),
        "text": d / "notes.txt",
    }


def _write_stereo(path: Path, frames: np.ndarray, rate: int) -> Path:
    pcm = (frames * 32767).astype("<i2")  # [n, 2] interleaved
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def transcribe(capsys: pytest.CaptureFixture[str], model: Path, *argv: str | Path) -> tuple[int, str, str]:
    return run(capsys, "transcribe", *argv, "--model", model, "--device", "cpu")


# ---- help and parsing -----------------------------------------------------------------------
def test_help_in_a_subprocess_is_fast_and_imports_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxtral_desktop", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for command in ("transcribe", "convert", "make-tiny"):
        assert command in result.stdout
    # --help must not pay for torch (seconds) or Qt.
    probe = (
        "import sys, voxtral_desktop.cli; print([m for m in ('torch', 'PySide6', 'av') if m in sys.modules])"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]", imported.stderr


def test_no_command_opens_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from voxtral_desktop import cli

    calls: list[list[str]] = []
    fake = types.SimpleNamespace(run_app=lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(
        cli.importlib, "import_module", lambda name: fake if name == "voxtral_desktop.ui.app" else None
    )
    assert main([]) == 0
    assert main(["--input-file", "talk.wav", "--model", "m.gguf"]) == 0
    assert calls == [[], ["--input-file", "talk.wav", "--model", "m.gguf"]]


def test_the_app_without_its_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from voxtral_desktop import cli

    def missing(name: str):
        raise ModuleNotFoundError("No module named 'PySide6'", name="PySide6")

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    assert main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'voxtral-desktop[app]'" in err


def test_help_still_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "transcribe" in capsys.readouterr().out


def test_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["transcribe", "--help"])
    assert exit_.value.code == 0
    assert "--output-format" in capsys.readouterr().out


# ---- make-tiny ------------------------------------------------------------------------------
def test_make_tiny(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "make-tiny", tmp_path / "m", "--format", "gguf", "--seed", "3", "--delay-ms", "800"
    )
    assert code == 0
    assert out.splitlines() == [str(tmp_path / "m" / "tiny-q4.gguf")]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["tiny-q4.gguf"]  # no native leftovers

    code, out, _ = run(capsys, "make-tiny", tmp_path / "n", "--format", "native")
    assert code == 0
    native = tmp_path / "n" / "native"
    assert out.splitlines() == [str(native)]
    assert sorted(p.name for p in native.iterdir()) == [
        "consolidated.safetensors",
        "params.json",
        "tekken.json",
    ]


def test_make_tiny_rejects_a_bad_delay(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "make-tiny", tmp_path, "--delay-ms", "100")
    assert code == 2 and err.startswith(ERROR_PREFIX) and len(err.splitlines()) == 1


# ---- transcribe -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["txt", "srt", "vtt", "json"])
def test_transcribe_to_stdout(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path], fmt: str
) -> None:
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"], "--output-format", fmt)
    assert code == 0, err
    assert err == ""  # no progress or log noise when stderr is not a terminal
    if fmt == "txt":
        assert out.endswith("\n") and out.count("\n") == 1
    elif fmt == "srt":
        assert out == "" or out.startswith("1\n00:00:")
    elif fmt == "vtt":
        assert out.startswith("WEBVTT\n")
    else:
        obj = json.loads(out)
        assert {"text", "delay_ms", "duration_s", "segments", "tokens"} <= set(obj)
        assert "language" not in obj
        assert obj["delay_ms"] == 480
        assert obj["duration_s"] == pytest.approx(1.2)
        assert obj["tokens"] and all(isinstance(t, int) and not isinstance(t, bool) for t in obj["tokens"])
        assert all(t != 2 for t in obj["tokens"])  # stops before EOS


def test_txt_equals_json_text(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path]
) -> None:
    _, txt, _ = transcribe(capsys, tiny["native"], audio["tone"])
    _, js, _ = transcribe(capsys, tiny["native"], audio["tone"], "-f", "json")
    assert txt == json.loads(js)["text"] + "\n"


def test_gguf_and_native_both_transcribe(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path]
) -> None:
    for model in (tiny["native"], tiny["gguf"]):
        code, out, err = transcribe(capsys, model, audio["tone"], "-f", "json")
        assert code == 0, err
        assert json.loads(out)["tokens"]


def test_output_dir_all_formats_for_several_files(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "subs"
    code, out, err = transcribe(
        capsys, tiny["gguf"], audio["tone"], audio["stereo"], "-f", "all", "-o", out_dir, "--language", "EN"
    )
    assert code == 0, err
    expected = [
        out_dir / f"{stem}.{ext}" for stem in ("tone", "stereo") for ext in ("txt", "srt", "vtt", "json")
    ]
    assert out.splitlines() == [str(p) for p in expected]
    assert sorted(out_dir.iterdir()) == sorted(expected)
    obj = json.loads((out_dir / "tone.json").read_text(encoding="utf-8"))
    assert obj["language"] == "en"
    assert (out_dir / "tone.txt").read_text(encoding="utf-8") == (obj["text"] + "\n" if obj["text"] else "")
    assert (out_dir / "tone.vtt").read_text(encoding="utf-8").startswith("WEBVTT\n")
    # Each file is its own stream: the second file's result does not depend on the first.
    _, alone, _ = transcribe(capsys, tiny["gguf"], audio["stereo"], "-f", "json")
    assert (
        json.loads(alone)["tokens"]
        == json.loads((out_dir / "stereo.json").read_text(encoding="utf-8"))["tokens"]
    )


def test_all_without_output_dir_writes_into_the_current_folder(
    capsys: pytest.CaptureFixture[str],
    tiny: dict[str, Path],
    audio: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"], "-f", "all")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.json", "tone.srt", "tone.txt", "tone.vtt"]
    assert len(out.splitlines()) == 4


def test_json_lines_for_several_files_on_stdout(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path]
) -> None:
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"], audio["silence"], "-f", "json")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["duration_s"] for line in lines] == [pytest.approx(1.2), pytest.approx(1.0)]


def test_delay_option_and_the_tokenizers_default(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"], "-f", "json", "--delay-ms", "960")
    assert code == 0, err
    assert json.loads(out)["delay_ms"] == 960
    # A model whose tekken.json says 800 ms transcribes at 800 ms unless told otherwise.
    assert main(["make-tiny", str(tmp_path), "--format", "native", "--delay-ms", "800"]) == 0
    capsys.readouterr()
    code, out, err = transcribe(capsys, tmp_path / "native", audio["tone"], "-f", "json")
    assert code == 0, err
    assert json.loads(out)["delay_ms"] == 800


def test_silence_transcribes_without_error(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path]
) -> None:
    code, out, err = transcribe(capsys, tiny["gguf"], audio["silence"], "-f", "srt")
    assert code == 0, err
    code, out, err = transcribe(capsys, tiny["gguf"], audio["silence"], "-f", "json")
    assert code == 0, err
    assert json.loads(out)["duration_s"] == pytest.approx(1.0)


def test_verbose_logs_to_stderr(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path]
) -> None:
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"], "-v")
    assert code == 0
    assert "INFO: " in err and "loaded" in err
    assert "INFO" not in out


def test_live_progress_on_a_terminal(
    capsys: pytest.CaptureFixture[str],
    tiny: dict[str, Path],
    audio: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"])
    assert code == 0
    # The text streams to stderr as it is decoded; the transcript still goes to stdout.
    assert err.startswith("tone.wav: ") and err.endswith("\n")
    assert out.strip() in err


# ---- errors: one line, non-zero, no traceback -----------------------------------------------
def assert_one_error_line(code: int, err: str) -> None:
    assert code != 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(ERROR_PREFIX)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("case", "expected_code"),
    [
        ("missing-model", 1),
        ("not-a-model-dir", 1),
        ("corrupt-gguf", 1),
        ("empty-model-file", 1),
        ("missing-audio", 1),
        ("audio-is-a-folder", 1),
        ("text-as-audio", 1),
        ("bad-delay", 2),
        ("bad-language", 2),
        ("cuda-on-cpu", 1),
        ("missing-tokenizer", 1),
        ("output-dir-is-a-file", 2),
        ("same-stem-twice", 2),
    ],
)
def test_transcribe_errors(
    capsys: pytest.CaptureFixture[str],
    tiny: dict[str, Path],
    audio: dict[str, Path],
    tmp_path: Path,
    case: str,
    expected_code: int,
) -> None:
    model, files, extra = tiny["native"], [audio["tone"]], []
    if case == "missing-model":
        model = tmp_path / "nope.gguf"
    elif case == "not-a-model-dir":
        model = tmp_path
    elif case == "corrupt-gguf":
        model = tmp_path / "bad.gguf"
        model.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    elif case == "empty-model-file":
        model = tmp_path / "empty.gguf"
        model.write_bytes(b"")
    elif case == "missing-audio":
        files = [tmp_path / "missing.wav"]
    elif case == "audio-is-a-folder":
        files = [tmp_path]
    elif case == "text-as-audio":
        files = [audio["text"]]
    elif case == "bad-delay":
        extra = ["--delay-ms", "100"]
    elif case == "bad-language":
        extra = ["--language", "xx"]
    elif case == "cuda-on-cpu":
        if __import__("torch").cuda.is_available():
            pytest.skip("this machine has a CUDA GPU")
        extra = ["--device", "cuda"]
    elif case == "missing-tokenizer":
        extra = ["--tokenizer", str(tmp_path / "tekken.json")]
    elif case == "output-dir-is-a-file":
        extra = ["-o", str(audio["text"])]
    elif case == "same-stem-twice":
        extra = ["-o", str(tmp_path / "out")]
        files = [audio["tone"], audio["tone"]]
    code = main(["transcribe", *map(str, files), "--model", str(model), *extra])
    out, err = capsys.readouterr()
    assert_one_error_line(code, err)
    assert code == expected_code
    assert out == ""
    if case in ("bad-delay", "bad-language"):
        assert ("100" if case == "bad-delay" else "ar, de, en") in err


def test_error_in_a_subprocess_has_no_traceback(
    tiny: dict[str, Path], audio: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    result = subprocess.run(
        [sys.executable, "-m", "voxtral_desktop", "transcribe", str(audio["tone"]), "--model", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_error_line(result.returncode, result.stderr)
    assert result.stdout == ""


def test_keyboard_interrupt_exits_130_quietly(
    capsys: pytest.CaptureFixture[str],
    tiny: dict[str, Path],
    audio: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voxtral_desktop.engine import transcribe as transcribe_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(transcribe_module, "transcribe_file", interrupted)
    code, out, err = transcribe(capsys, tiny["native"], audio["tone"])
    assert code == cli.EXIT_INTERRUPTED == 130
    assert out == "" and err == ""


def test_bugs_keep_their_traceback(
    tiny: dict[str, Path], audio: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxtral_desktop.engine import transcribe as transcribe_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(transcribe_module, "transcribe_file", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["transcribe", str(audio["tone"]), "--model", str(tiny["native"])])


# ---- convert --------------------------------------------------------------------------------
def test_convert_then_transcribe(
    capsys: pytest.CaptureFixture[str], tiny: dict[str, Path], audio: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "model.gguf"
    code, stdout, err = run(capsys, "convert", tiny["native"], out)
    assert code == 0, err
    assert stdout.splitlines() == [str(out)]
    # The converter is deterministic: the same bytes as make-tiny's own GGUF.
    assert out.read_bytes() == tiny["gguf"].read_bytes()

    shards = tmp_path / "shards"
    code, stdout, err = run(capsys, "convert", tiny["native"], shards, "--shard-size", "64K")
    assert code == 0, err
    written = [Path(line) for line in stdout.splitlines()]
    assert len(written) > 1 and all(p.parent == shards and p.is_file() for p in written)
    assert b"".join(p.read_bytes() for p in written) == out.read_bytes()

    code, one, err = transcribe(capsys, out, audio["tone"], "-f", "json")
    assert code == 0, err
    code, split, err = transcribe(capsys, shards, audio["tone"], "-f", "json")
    assert code == 0, err
    assert json.loads(one)["tokens"] == json.loads(split)["tokens"]


@pytest.mark.parametrize("case", ["bad-size", "missing-src", "src-not-native"])
def test_convert_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny: dict[str, Path], case: str
) -> None:
    argv: list[str | Path] = ["convert", tiny["native"], tmp_path / "o.gguf"]
    if case == "bad-size":
        argv += ["--shard-size", "lots"]
    elif case == "missing-src":
        argv[1] = tmp_path / "missing"
    else:
        argv[1] = tmp_path
    code, _, err = run(capsys, *argv)
    assert_one_error_line(code, err)
    assert not (tmp_path / "o.gguf").exists()


def test_kernel_and_device_lists_match_the_modules() -> None:
    """The CLI keeps torch-free copies of these lists for a fast --help."""
    from voxtral_desktop import cli
    from voxtral_desktop.device import DEVICE_CHOICES
    from voxtral_desktop.kernels.select import KERNELS

    assert cli.DEVICE_CHOICES == DEVICE_CHOICES
    assert cli.KERNELS == KERNELS
