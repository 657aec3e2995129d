"""One logical, read-only byte buffer over a file or over the raw byte-split shards of a file.

The browser demo publishes its GGUF as `split -b 512m` pieces. Joining them on disk would cost
another 2.5 GB of disk and a full copy, so `ConcatenatedFile` memory-maps every shard and maps
logical offsets to (shard, local offset). A byte range inside one shard comes back as a zero-copy
view of that shard's map; only a range that straddles a shard boundary is copied into one buffer.

The maps are opened copy-on-write (numpy mode "c"): the arrays are writable, so
`torch.from_numpy` accepts them without its read-only warning, and a stray in-place write into a
weight lands in a private page of this process instead of crashing (a read-only map) or touching
the file (a shared map). Pages that are only read stay shared with the page cache.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voxtral_desktop.errors import ModelFileError

# Files in a shard directory that are not shards: the tokenizer (and any other JSON) may sit
# beside the pieces, as may dotfiles such as .DS_Store or download-manager state.
_NOT_A_SHARD_SUFFIXES = (".json",)


def _natural_key(name: str) -> list[object]:
    """Sort "chunk_2" before "chunk_10"; `split` names (aa, ab, ...) sort as plain strings do."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_shards(directory: Path) -> list[Path]:
    """The shard files of a directory in concatenation order (natural sort of their names)."""
    try:
        entries = list(directory.iterdir())
    except OSError as exc:
        raise ModelFileError(f"cannot read directory {directory}: {exc.strerror or exc}") from None
    files = [
        p
        for p in entries
        if p.is_file() and not p.name.startswith(".") and not p.name.lower().endswith(_NOT_A_SHARD_SUFFIXES)
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


class ConcatenatedFile:
    """Read-only random access to the concatenation of `paths` (one path: a plain file)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise ValueError("ConcatenatedFile needs at least one path")
        self.paths: tuple[Path, ...] = tuple(paths)
        self._starts: list[int] = []  # logical offset of each non-empty part
        self._maps: list[np.memmap] = []
        total = 0
        for path in self.paths:
            try:
                size = os.path.getsize(path)
                if size == 0:
                    continue  # np.memmap cannot map an empty file, and it holds no bytes anyway
                mapped = np.memmap(path, dtype=np.uint8, mode="c")
            except OSError as exc:
                raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
            self._starts.append(total)
            self._maps.append(mapped)
            total += size
        self.size = total

    @property
    def label(self) -> str:
        if len(self.paths) == 1:
            return str(self.paths[0])
        return f"{self.paths[0].parent} ({len(self.paths)} shards)"

    def _locate(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) - 1

    def array(self, offset: int, length: int) -> np.ndarray:
        """Bytes [offset, offset + length) as uint8: a view of the map when in one shard, else a copy."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"range {offset}+{length} is outside the {self.size}-byte buffer")
        if length == 0:
            return np.empty(0, dtype=np.uint8)
        i = self._locate(offset)
        local = offset - self._starts[i]
        part = self._maps[i]
        if local + length <= part.shape[0]:
            return part[local : local + length]
        out = np.empty(length, dtype=np.uint8)
        done = 0
        while done < length:
            part = self._maps[i]
            take = min(length - done, part.shape[0] - local)
            out[done : done + take] = part[local : local + take]
            done += take
            i += 1
            local = 0
        return out

    def read(self, offset: int, length: int) -> bytes:
        """A small copy of bytes [offset, offset + length), for parsing headers."""
        return self.array(offset, length).tobytes()

    def is_view(self, offset: int, length: int) -> bool:
        """True when `array(offset, length)` is zero-copy (the range lies inside one shard)."""
        i = self._locate(offset)
        return i >= 0 and offset - self._starts[i] + length <= self._maps[i].shape[0]
