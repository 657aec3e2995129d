"""The Mistral-native checkpoint directory: params.json + consolidated.safetensors + tekken.json.

safetensors is read with `safe_open` only (a header of names, dtypes, shapes and offsets, then raw
bytes: never pickle). The header is validated by the safetensors library itself (it rejects a
file whose data does not cover the header's offsets, i.e. a truncated download); we then check
names, shapes and dtypes against `expected_tensors` before any tensor data is read.

Tensors are read lazily: `NativeTensors[name]` reads one tensor from disk per access, so a model
loader that moves each tensor to the GPU (or the converter, which quantises it) never holds more
than about one tensor of the 8.9 GB checkpoint in host memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.errors import ConfigError, ModelFileError, TokenizerError
from voxtral_desktop.weights.names import expected_tensors
from voxtral_desktop.weights.validate import check_tensor_set

PARAMS_JSON = "params.json"
SAFETENSORS = "consolidated.safetensors"
TEKKEN_JSON = "tekken.json"

_SAFETENSORS_TYPES = {"F32": "F32", "F16": "F16", "BF16": "BF16"}


def is_native_dir(path: Path) -> bool:
    return path.is_dir() and (path / PARAMS_JSON).is_file() and (path / SAFETENSORS).is_file()


def read_params(path: Path) -> ModelConfig:
    """`ModelConfig` from a params.json file; every failure is a one-line ModelFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{path} is not UTF-8 text") from None
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return config_from_params(params, str(path))


def config_from_params(params: Any, where: str) -> ModelConfig:
    if not isinstance(params, dict):
        raise ModelFileError(f"{where} is not a Voxtral Realtime config (expected a JSON object)")
    try:
        return ModelConfig.from_params(params)
    except ConfigError as exc:
        raise ModelFileError(f"{where}: {exc}") from None


def read_tekken(path: Path) -> bytes:
    """The raw bytes of a tekken.json, after a cheap sanity check (JSON object with a vocab)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TokenizerError(f"no such tokenizer file: {path}") from None
    except OSError as exc:
        raise TokenizerError(f"cannot read tokenizer {path}: {exc.strerror or exc}") from None
    check_tekken(data, str(path))
    return data


def check_tekken(data: bytes, where: str) -> None:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TokenizerError(f"{where} is not a valid tekken.json (not UTF-8 JSON)") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("vocab"), list)
        or not isinstance(doc.get("config"), dict)
    ):
        raise TokenizerError(f"{where} is not a tekken.json tokenizer (no 'config' and 'vocab')")


class NativeTensors(Mapping[str, torch.Tensor]):
    """Lazy name -> tensor view of consolidated.safetensors (each access reads from disk)."""

    def __init__(self, path: Path, names: list[str], handle: Any = None) -> None:
        self._path = path
        self._names = names
        self._handle: Any = handle  # a safe_open object; opened on first access when None

    def _file(self) -> Any:
        if self._handle is None:
            self._handle = _open_safetensors(self._path)
        return self._handle

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(name)
        return self._file().get_tensor(name)

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Rows [start, stop) of a tensor, read without loading the rest of it."""
        if name not in self._names:
            raise KeyError(name)
        return self._file().get_slice(name)[start:stop]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class NativeModel:
    path: Path
    config: ModelConfig
    tensors: NativeTensors
    tekken_json: bytes
    source_dtype: str  # "BF16" for the published checkpoint


def _open_safetensors(path: Path) -> Any:
    try:
        return safe_open(str(path), framework="pt")
    except FileNotFoundError:
        raise ModelFileError(f"no such file: {path}") from None
    except Exception as exc:  # SafetensorError is not importable by a stable name
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{path} is not a valid safetensors file ({detail}); re-download it") from None


def open_native(path: Path, tokenizer_path: Path | None = None) -> NativeModel:
    """Validate a native checkpoint directory and return lazy access to its tensors."""
    config = read_params(path / PARAMS_JSON)
    st_path = path / SAFETENSORS
    handle = _open_safetensors(st_path)
    found: dict[str, tuple[tuple[int, ...], str]] = {}
    for name in handle.keys():
        view = handle.get_slice(name)
        dtype = str(view.get_dtype())
        found[name] = (tuple(int(d) for d in view.get_shape()), _SAFETENSORS_TYPES.get(dtype, dtype))
    check_tensor_set(config, found, str(st_path))
    tekken = _find_tekken(path, tokenizer_path)
    order = [spec.name for spec in expected_tensors(config)]
    dtypes = sorted({found[n][1] for n in order})
    tensors = NativeTensors(st_path, order, handle)
    return NativeModel(path, config, tensors, tekken, "/".join(dtypes))


def _find_tekken(model_dir: Path, tokenizer_path: Path | None) -> bytes:
    if tokenizer_path is not None:
        return read_tekken(tokenizer_path)
    candidate = model_dir / TEKKEN_JSON
    if not candidate.is_file():
        raise TokenizerError(f"{model_dir} has no {TEKKEN_JSON}: pass --tokenizer tekken.json")
    return read_tekken(candidate)
