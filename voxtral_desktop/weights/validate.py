"""Check a checkpoint's tensor table against `expected_tensors(config)`, before loading any data.

Every reader (native safetensors, our GGUF, the seed GGUF) describes its tensors as
name -> (torch-order shape, storage type name) and calls `check_tensor_set`. The first problem is
reported by name with both shapes; the count of further problems is appended, so the message
stays one line even for a checkpoint of the wrong model.
"""

from __future__ import annotations

from collections.abc import Mapping

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.errors import ModelFileError
from voxtral_desktop.weights.names import TensorKind, TensorSpec, expected_tensors

FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
# Matmul weights and the embedding may be Q4_0 (our GGUF) or float (native, or a float GGUF);
# norms, biases and the conv stem must be float: they are tiny and precision-critical.
ALLOWED_TYPES: dict[TensorKind, frozenset[str]] = {
    TensorKind.LINEAR: FLOAT_TYPES | {"Q4_0"},
    TensorKind.EMBEDDING: FLOAT_TYPES | {"Q4_0"},
    TensorKind.VECTOR: FLOAT_TYPES,
    TensorKind.CONV: FLOAT_TYPES,
}


def check_tensor_set(
    config: ModelConfig, found: Mapping[str, tuple[tuple[int, ...], str]], where: str
) -> None:
    """Raise ModelFileError unless `found` has exactly the expected names, shapes and types."""
    specs = expected_tensors(config)
    problems = _problems(specs, found)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ModelFileError(f"{where}: {problems[0]}{more}")


def _problems(specs: list[TensorSpec], found: Mapping[str, tuple[tuple[int, ...], str]]) -> list[str]:
    problems: list[str] = []
    expected_names = {s.name for s in specs}
    for spec in specs:
        if spec.name not in found:
            problems.append(f"missing tensor {spec.name} (expected shape {spec.shape})")
            continue
        shape, type_name = found[spec.name]
        if tuple(shape) != spec.shape:
            problems.append(f"tensor {spec.name} has shape {tuple(shape)}, expected {spec.shape}")
        elif type_name not in ALLOWED_TYPES[spec.kind]:
            allowed = "/".join(sorted(ALLOWED_TYPES[spec.kind]))
            problems.append(
                f"tensor {spec.name} is stored as {type_name}; a {spec.kind.value} tensor must be {allowed}"
            )
    for name in found:
        if name not in expected_names:
            problems.append(f"unexpected tensor {name} with shape {tuple(found[name][0])}")
    return problems
