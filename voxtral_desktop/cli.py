"""`voxtral-desktop` command line: transcribe files, convert checkpoints, make a tiny test model.

This module never imports Qt, and imports torch (through the engine) only inside the command
that needs it, so `--help` and argument errors answer instantly.

Every `VoxtralError` becomes one line, `voxtral-desktop: error: <message>`, on stderr and the
error's exit code; Ctrl-C exits 130 quietly. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from voxtral_desktop import __version__
from voxtral_desktop.errors import AudioError, ConfigError, DeviceError, VoxtralError

if TYPE_CHECKING:
    from voxtral_desktop.config import StreamConfig
    from voxtral_desktop.engine.batch import BatchDecoder
    from voxtral_desktop.engine.engine import Engine
    from voxtral_desktop.engine.events import SessionUpdate

PROG = "voxtral-desktop"
# Mirrors device.DEVICE_CHOICES; repeated here because device.py imports torch.
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # as in device.py, which imports torch
KERNELS = ("auto", "reference", "int4", "triton", "mma", "dense")  # as in kernels/select.py
KV_CACHES = ("auto", "int8", "full")  # as in kernels/select.py
KV_HELP = (
    "how the attention caches store keys and values: int8 (half the memory; the default on CUDA) "
    "or full (the compute dtype: exact; the default elsewhere) (default: auto)"
)
OUTPUT_FORMATS = ("txt", "srt", "vtt", "json", "all")
SEGMENT_SECONDS_CUDA = 30.0  # --segment-seconds on a CUDA device unless told otherwise
SEGMENT_BATCH = 8  # segments of one file decoded side by side
# Several files: their segments share the rows of one decoder (as many as the files' durations
# call for, up to this), on dense weight copies where they fit (engine/batch.choose_dense). On the
# H100, 256 x 60 s files in 30 s segments ran at 323x with 32 rows, 515x with 64, 680x with 128
# and 847x with 256 (bench/RESULTS.md, session 7): a dense step reads its 8.9 GB of weights
# whatever the rows, so more rows cost little. A GPU too small for them takes half the rows, etc.
FOLDER_BATCH = 256
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: `voxtral-desktop transcribe ... | head`

log = logging.getLogger("voxtral_desktop.cli")


# ---- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    # -v works before or after the subcommand; SUPPRESS keeps a subcommand from resetting it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output (-vv: debug)"
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local, private transcription with Voxtral Mini 4B Realtime.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    tr = commands.add_parser(
        "transcribe",
        parents=[verbose],
        help="transcribe audio or video files",
        description="Transcribe audio or video files (anything ffmpeg decodes). Without --output-dir "
        "the transcript goes to stdout (JSON: one object per line per file).",
    )
    tr.add_argument("files", nargs="+", metavar="FILE", type=Path, help="audio or video files")
    tr.add_argument(
        "--model", required=True, type=Path, help="GGUF file, GGUF shard folder or native model folder"
    )
    tr.add_argument("--tokenizer", type=Path, help="tekken.json (default: the one in or beside the model)")
    tr.add_argument(
        "-f", "--output-format", choices=OUTPUT_FORMATS, default="txt", help="output format (default: txt)"
    )
    tr.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        help="write FILE-stem.<format> files here instead of printing (--output-format all "
        "without it writes into the current folder)",
    )
    tr.add_argument(
        "--delay-ms",
        type=int,
        help="transcription delay: a multiple of 80 from 80 to 2400; more is more accurate "
        "(default: the tokenizer's, else 480)",
    )
    tr.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")
    tr.add_argument(
        "--kernel",
        choices=KERNELS,
        default="auto",
        help="Q4 matmul: auto (fast int4 on CPU/CUDA), reference (exact, slow), triton, dense "
        "(default: auto)",
    )
    tr.add_argument("--kv-cache", choices=KV_CACHES, default="auto", help=KV_HELP)
    tr.add_argument(
        "--language", help="language of the audio, recorded in the output (the model detects it itself)"
    )
    tr.add_argument(
        "--segment-seconds",
        type=float,
        metavar="S",
        help="cut each file at pauses into segments of at most S seconds and decode 8 of them side "
        "by side: several times faster on a GPU, where one stream waits on every 80 ms step (words "
        "right at a cut may differ); 0 = the whole file as one exact stream "
        f"(default: {SEGMENT_SECONDS_CUDA:g} on CUDA, else 0)",
    )
    tr.set_defaults(func=_cmd_transcribe)

    cv = commands.add_parser(
        "convert",
        parents=[verbose],
        help="convert a Mistral-native model folder to a Q4_0 GGUF",
        description="Convert a Mistral-native model folder (params.json, consolidated.safetensors, "
        "tekken.json) to a self-contained Q4_0 GGUF.",
    )
    cv.add_argument("src", type=Path, metavar="SRC", help="native model folder")
    cv.add_argument("out", type=Path, metavar="OUT.gguf", help="output file (a folder with --shard-size)")
    cv.add_argument(
        "--shard-size", metavar="SIZE", help="split the output into SIZE pieces in folder OUT (e.g. 512M)"
    )
    cv.add_argument("--tokenizer", type=Path, help="tekken.json to embed (default: SRC/tekken.json)")
    cv.set_defaults(func=_cmd_convert)

    mt = commands.add_parser(
        "make-tiny",
        parents=[verbose],
        help="write a tiny random model for tests and demos",
        description="Write a tiny random Voxtral model (real architecture, toy sizes): "
        "OUT_DIR/native/ and/or OUT_DIR/tiny-q4.gguf. It runs everything in seconds but "
        "transcribes nothing meaningful.",
    )
    mt.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    mt.add_argument("--format", choices=("native", "gguf", "both"), default="both", help="default: both")
    mt.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    mt.add_argument("--text-tokens", type=int, default=512, help="text vocabulary size (default: 512)")
    mt.add_argument("--delay-ms", type=int, default=480, help="the tokenizer's default delay (default: 480)")
    mt.set_defaults(func=_cmd_make_tiny)

    bn = commands.add_parser(
        "bench",
        parents=[verbose],
        help="measure speed with a full-size random model built in memory",
        description="Build a full-size model with random Q4_0 weights in memory (no download) and "
        "measure load time, streaming step latency, time to first token, a long file's speed, a "
        "folder batch's throughput and peak memory.",
    )
    bn.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="compute device (default: auto)")
    bn.add_argument("--kernel", choices=KERNELS, default="auto", help="Q4 matmul (default: auto)")
    bn.add_argument("--kv-cache", choices=KV_CACHES, default="auto", help=KV_HELP)
    bn.add_argument("--steps", type=int, default=1000, help="streaming steps to time (default: 1000)")
    bn.add_argument(
        "--full-window-steps",
        type=int,
        help="then steps to time with the decoder's whole window cached (noise fills it first: ~8,200 "
        "steps); 0 to skip (default: 200 on a GPU, 0 on the CPU, where filling takes many minutes)",
    )
    bn.add_argument(
        "--file-seconds", type=float, default=600.0, help="long file length, 0 to skip (default: 600)"
    )
    bn.add_argument(
        "--batch-files",
        type=int,
        nargs="+",
        default=[64],
        help="files in the folder batch, or several batch sizes measured in turn (the folder through "
        "transcribe takes the first); 0 to skip (default: 64)",
    )
    bn.add_argument(
        "--batch-seconds", type=float, default=60.0, help="length of each batch file (default: 60)"
    )
    bn.add_argument(
        "--segment-seconds",
        type=float,
        default=30.0,
        help="also time the long file cut into segments of at most this length decoded as a batch "
        "(0 to skip; default: 30)",
    )
    bn.add_argument("--segment-batch", type=int, default=8, help="segments decoded at once (default: 8)")
    bn.add_argument(
        "--folder-batch",
        type=int,
        default=FOLDER_BATCH,
        help="rows the folder's segments share, as `transcribe` does with several files; 0 to skip "
        f"(default: {FOLDER_BATCH})",
    )
    bn.add_argument(
        "--compare", choices=("transformers",), help="also time HF transformers on the same audio"
    )
    bn.add_argument("--json", type=Path, help="write the results as JSON here")
    bn.set_defaults(func=_cmd_bench)
    return parser


# ---- entry point ----------------------------------------------------------------------------
def _wants_app(argv: Sequence[str]) -> bool:
    """No subcommand: the desktop app (`voxtral-desktop`, `voxtral-desktop --input-file F`, ...)."""
    if not argv:
        return True
    first = argv[0]
    return first.startswith("-") and first not in ("-h", "--help", "--version", "-v", "--verbose")


def _run_app(argv: Sequence[str]) -> int:
    # Imported by name at run time: the command-line tools never load Qt (import-linter checks
    # the static imports); only the GUI does, and only when it is asked for.
    try:
        app = importlib.import_module("voxtral_desktop.ui.app")
    except ImportError as exc:
        print(
            f"{PROG}: error: the desktop app needs its extra packages ({exc.name or exc}): "
            "pip install 'voxtral-desktop[app]'",
            file=sys.stderr,
        )
        return 1
    return int(app.run_app(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if _wants_app(args_in):
        return _run_app(args_in)
    parser = build_parser()
    args = parser.parse_args(args_in)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    with _cli_logging(args.verbose):
        try:
            return int(args.func(args))
        except VoxtralError as exc:
            _Live.end_line()
            message = " ".join(str(exc).split()) or type(exc).__name__
            print(f"{PROG}: error: {message}", file=sys.stderr)
            return exc.exit_code or 1
        except KeyboardInterrupt:
            _Live.end_line()
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`| head`); stop quietly, and keep Python's exit-time flush
            # of stdout from raising a second time.
            _silence_stdout()
            return EXIT_BROKEN_PIPE


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of the record (pytest swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


@contextlib.contextmanager
def _cli_logging(verbosity: int) -> Iterator[None]:
    """Package logs to stderr for the duration of one command, then the previous setup again
    (main() runs many times in one process under the tests)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logger = logging.getLogger("voxtral_desktop")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# ---- live progress --------------------------------------------------------------------------
class _Live:
    """Streams the text as it is decoded to stderr, only when stderr is a terminal."""

    _open_line = False

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    def start(self, path: Path, index: int, total: int) -> None:
        if self.enabled:
            counter = f"[{index}/{total}] " if total > 1 else ""
            self._write(f"{counter}{path.name}: ")

    def update(self, update: SessionUpdate) -> None:
        if self.enabled and update.text:
            self._write(update.text)

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
            _Live._open_line = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
        _Live._open_line = True

    @classmethod
    def end_line(cls) -> None:
        """Before an error line: finish a half-written progress line."""
        if cls._open_line:
            sys.stderr.write("\n")
            cls._open_line = False


# ---- transcribe -----------------------------------------------------------------------------
def _check_language(code: str | None, languages: Sequence[str]) -> str | None:
    if code is None:
        return None
    norm = code.strip().lower()
    if norm not in languages:
        raise ConfigError(f"unsupported language {code!r}: choose one of {', '.join(languages)}")
    return norm


def _check_inputs(files: Sequence[Path]) -> None:
    # Before the (slow) model load, so a typo fails at once.
    for path in files:
        if not path.exists():
            raise AudioError(f"no such file: {path}")
        if path.is_dir():
            raise AudioError(f"{path} is a directory, not an audio file")


def _check_collisions(files: Sequence[Path], out_dir: Path) -> None:
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise ConfigError(
                f"{seen[path.stem]} and {path} would both be written as {out_dir / path.stem}.*; "
                "transcribe them separately or rename one"
            )
        seen[path.stem] = path


def default_segment_seconds(device_type: str) -> float:
    """Segments on a GPU, where one stream waits on every step; one exact stream elsewhere."""
    return SEGMENT_SECONDS_CUDA if device_type == "cuda" else 0.0


def _check_segment_seconds(value: float | None) -> None:
    # Before the model load; 80 ms is one decoder position, the shortest segment there is.
    if value is not None and not (value == 0 or (math.isfinite(value) and value >= 0.08)):
        raise ConfigError(f"--segment-seconds must be 0 (one exact stream) or at least 0.08, got {value:g}")


def _folder_rows(files: Sequence[Path], segment_s: float) -> int:
    """Rows for several files' segments: about as many as they make (from the containers'
    durations; a file without one counts as many), as a power of two from SEGMENT_BATCH up to
    FOLDER_BATCH, so two short files do not pay for 256 rows."""
    from voxtral_desktop.audio.decode import metadata_duration

    pieces = 0
    for path in files:
        seconds = metadata_duration(path)
        pieces += FOLDER_BATCH if seconds is None else max(1, math.ceil(seconds / segment_s))
        if pieces >= FOLDER_BATCH:
            return FOLDER_BATCH
    rows = SEGMENT_BATCH
    while rows < pieces:
        rows *= 2
    return min(rows, FOLDER_BATCH)


def _segment_decoder(
    engine: Engine, config: StreamConfig, segment_s: float, files: Sequence[Path], *, asked: bool
) -> BatchDecoder | None:
    """The batch decoder for segments of `segment_s` (None: one exact stream per file): rows for
    one file's SEGMENT_BATCH segments, or for several files' (`_folder_rows`). Out of GPU memory,
    half the rows down to SEGMENT_BATCH, then (unless segments were asked for) one stream with a
    warning."""
    if segment_s <= 0:
        return None
    sizes = [_folder_rows(files, segment_s) if len(files) > 1 else SEGMENT_BATCH]
    while sizes[-1] > SEGMENT_BATCH:
        sizes.append(max(sizes[-1] // 2, SEGMENT_BATCH))
    for batch, fewer in zip(sizes, [*sizes[1:], None], strict=True):
        try:
            decoder = engine.batch_decoder(config, batch=batch, max_seconds=segment_s)
        except DeviceError as e:
            if fewer is not None:
                log.info("%s; trying %d rows", e, fewer)
                continue
            if asked:  # asked for: say why it cannot be done
                raise
            # The default on a small GPU: the exact single stream needs far less memory.
            log.warning("%s; decoding each file as one stream instead", e)
            return None
        log.info("segments of up to %g s, %d side by side", segment_s, batch)
        return decoder
    return None


def _cmd_transcribe(args: argparse.Namespace) -> int:
    from voxtral_desktop.audio.decode import iter_audio
    from voxtral_desktop.audio.prefetch import decoded_ahead
    from voxtral_desktop.config import StreamConfig, check_delay_ms
    from voxtral_desktop.engine.engine import LANGUAGES, Engine
    from voxtral_desktop.engine.events import SessionUpdate
    from voxtral_desktop.engine.long_file import transcribe_segmented, transcribe_segmented_files
    from voxtral_desktop.engine.transcribe import CHUNK_SECONDS, Transcript, transcribe_file
    from voxtral_desktop.engine.writers import FORMATS, dumps_json, format_json, render, write_outputs

    if args.delay_ms is not None:
        check_delay_ms(args.delay_ms)
    _check_segment_seconds(args.segment_seconds)
    language = _check_language(args.language, LANGUAGES)
    files: list[Path] = args.files
    _check_inputs(files)
    formats = FORMATS if args.output_format == "all" else (args.output_format,)
    out_dir: Path | None = args.output_dir
    if out_dir is None and args.output_format == "all":
        out_dir = Path.cwd()  # four formats cannot share stdout
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--output-dir {out_dir} is a file, not a folder")
        _check_collisions(files, out_dir)

    engine = Engine.load(
        args.model,
        tokenizer_path=args.tokenizer,
        device=args.device,
        kernel=args.kernel,
        kv_cache=args.kv_cache,
    )
    delay_ms = args.delay_ms if args.delay_ms is not None else engine.default_delay_ms
    config = StreamConfig(delay_ms=delay_ms)
    live = _Live(sys.stderr)
    segment_s = args.segment_seconds
    if segment_s is None:
        segment_s = default_segment_seconds(engine.device.device.type)
    decoder = _segment_decoder(engine, config, segment_s, files, asked=args.segment_seconds is not None)

    def emit(path: Path, transcript: Transcript) -> None:
        log.info("%s: %.1f s of audio, %d tokens", path, transcript.duration_s, len(transcript.tokens))
        if out_dir is not None:
            for written in write_outputs(transcript, out_dir / path.stem, formats):
                print(written)
        elif args.output_format == "json":
            # One compact object per line: a stream of several files stays parseable (JSON Lines).
            print(dumps_json(format_json(transcript), indent=None))
        elif args.output_format == "txt":
            print(transcript.text.strip())
        else:
            sys.stdout.write(render(transcript, args.output_format))
        sys.stdout.flush()

    if decoder is None:
        session = engine.session(config)  # one session, reset per file
        for index, path in enumerate(files, start=1):
            live.start(path, index, len(files))
            transcript = transcribe_file(session, path, language=language, on_update=live.update)
            live.done()
            emit(path, transcript)
    elif len(files) == 1:
        live.start(files[0], 1, 1)
        chunks = iter_audio(files[0], chunk_seconds=CHUNK_SECONDS)
        transcript = transcribe_segmented(
            decoder,
            chunks,
            max_seconds=segment_s,
            language=language,
            on_update=live.update,
            balance_tail=True,
        )
        live.done()
        emit(files[0], transcript)
    else:
        # The files' segments share the decoder's rows; each file is written as soon as it is done
        # (in order), and its text is shown then.
        # Decoded ahead by worker processes: a fast GPU transcribes compressed audio faster
        # than one core decodes it.
        with contextlib.closing(decoded_ahead(files, chunk_seconds=CHUNK_SECONDS)) as sources:
            for index, transcript in transcribe_segmented_files(
                decoder, sources, max_seconds=segment_s, language=language, balance_tail=True
            ):
                live.start(files[index], index + 1, len(files))
                live.update(SessionUpdate(tokens=transcript.tokens))
                live.done()
                emit(files[index], transcript)
    return 0


# ---- convert --------------------------------------------------------------------------------
def _byte_bar(description: str, *, disable: bool = False) -> Any:
    from tqdm import tqdm

    # disable=None: a bar on a terminal, nothing in logs and pipes.
    return tqdm(
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=True if disable else None,
    )


def _progress(bar: Any) -> Any:
    def report(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return report


def _cmd_convert(args: argparse.Namespace) -> int:
    from voxtral_desktop.weights.convert import convert_native_to_gguf, parse_size

    shard_size = parse_size(args.shard_size) if args.shard_size is not None else None
    with _byte_bar("converting") as bar:
        paths = convert_native_to_gguf(
            args.src, args.out, shard_size=shard_size, progress=_progress(bar), tokenizer_path=args.tokenizer
        )
    for path in paths:
        print(path)
    return 0


# ---- bench ----------------------------------------------------------------------------------
def _cmd_bench(args: argparse.Namespace) -> int:
    from voxtral_desktop.benchmark import format_table, run_bench, write_json

    result = run_bench(
        device=args.device,
        kernel=args.kernel,
        kv_cache=args.kv_cache,
        steps=args.steps,
        full_window_steps=args.full_window_steps,
        file_seconds=args.file_seconds,
        batch_files=args.batch_files,
        batch_seconds=args.batch_seconds,
        segment_seconds=args.segment_seconds,
        segment_batch=args.segment_batch,
        folder_batch=args.folder_batch,
        compare_transformers=args.compare == "transformers",
        report=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(result))
    if args.json is not None:
        print(write_json(result, args.json))
    return 0


# ---- make-tiny ------------------------------------------------------------------------------
def _cmd_make_tiny(args: argparse.Namespace) -> int:
    from voxtral_desktop.synthetic.tiny import make_tiny_model

    # Only the GGUF conversion takes long enough to deserve a bar.
    with _byte_bar("writing GGUF", disable=args.format == "native") as bar:
        written = make_tiny_model(
            args.out_dir,
            fmt=args.format,
            seed=args.seed,
            n_text_tokens=args.text_tokens,
            delay_ms=args.delay_ms,
            progress=_progress(bar),
        )
    for path in written.values():
        print(path)
    return 0
