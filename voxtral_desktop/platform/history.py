"""The dictation history: one SQLite row per utterance, written as the utterance happens.

A row is inserted when recording starts and updated every time text arrives, each in its own
committed transaction (WAL journal), so a crash or power cut loses at most the last token. Rows
a crash left in the `recording` state are marked `interrupted` the next time the store opens.
The database lives in the platformdirs user data directory unless a path is given.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import platformdirs

log = logging.getLogger(__name__)

APP_NAME = "voxtral-desktop"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS utterances (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,      -- unix time
    duration_s REAL NOT NULL DEFAULT 0,
    text TEXT NOT NULL DEFAULT '',
    app TEXT NOT NULL DEFAULT '',
    window TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''  -- why delivery failed, if it did
);
CREATE INDEX IF NOT EXISTS utterances_started ON utterances(started_at);
"""


class Status(str, Enum):
    RECORDING = "recording"
    DONE = "done"
    NOT_DELIVERED = "not-delivered"  # recognised, but typing into the target failed part-way
    INTERRUPTED = "interrupted"  # the app stopped (or the device vanished) mid-utterance


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    started_at: float
    duration_s: float
    text: str
    app: str
    window: str
    status: Status
    note: str


def default_history_path() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "history.sqlite3"


class HistoryStore:
    """Thread-affine: use one store from one thread (the app uses it from the GUI thread)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_history_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: every statement commits
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.create_function("vx_contains", 2, _contains, deterministic=True)
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        n = self._db.execute(
            "UPDATE utterances SET status=? WHERE status=?",
            (Status.INTERRUPTED.value, Status.RECORDING.value),
        ).rowcount
        if n:
            log.info("marked %d utterance(s) left recording by an earlier run as interrupted", n)

    def close(self) -> None:
        self._db.close()

    def begin(self, *, started_at: float | None = None, app: str = "", window: str = "") -> int:
        cur = self._db.execute(
            "INSERT INTO utterances(started_at, app, window, status) VALUES (?, ?, ?, ?)",
            (time.time() if started_at is None else started_at, app, window, Status.RECORDING.value),
        )
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def update_text(self, entry_id: int, text: str, duration_s: float | None = None) -> None:
        if duration_s is None:
            self._db.execute("UPDATE utterances SET text=? WHERE id=?", (text, entry_id))
        else:
            self._db.execute(
                "UPDATE utterances SET text=?, duration_s=? WHERE id=?", (text, duration_s, entry_id)
            )

    def finish(
        self, entry_id: int, *, text: str, duration_s: float, status: Status = Status.DONE, note: str = ""
    ) -> None:
        self._db.execute(
            "UPDATE utterances SET text=?, duration_s=?, status=?, note=? WHERE id=?",
            (text, duration_s, status.value, note, entry_id),
        )

    def set_where(self, entry_id: int, *, app: str, window: str) -> None:
        self._db.execute("UPDATE utterances SET app=?, window=? WHERE id=?", (app, window, entry_id))

    def mark(self, entry_id: int, status: Status, note: str) -> None:
        self._db.execute("UPDATE utterances SET status=?, note=? WHERE id=?", (status.value, note, entry_id))

    def get(self, entry_id: int) -> HistoryEntry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM utterances WHERE id=?", (entry_id,)).fetchone()
        return _entry(row) if row else None

    def search(self, query: str = "", limit: int = 200) -> list[HistoryEntry]:
        """Newest first; `query` matches text, app or window title, Unicode case-insensitively."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM utterances "
            "WHERE ?1 = '' OR vx_contains(text || ' ' || app || ' ' || window, ?1) "
            "ORDER BY started_at DESC, id DESC LIMIT ?2",
            (query.casefold(), limit),
        ).fetchall()
        return [_entry(r) for r in rows]

    def delete(self, entry_id: int) -> bool:
        return self._db.execute("DELETE FROM utterances WHERE id=?", (entry_id,)).rowcount > 0


def _contains(haystack: str, folded_needle: str) -> bool:
    return folded_needle in haystack.casefold()


_COLUMNS = "id, started_at, duration_s, text, app, window, status, note"


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    return HistoryEntry(
        id=int(row[0]),
        started_at=float(row[1]),
        duration_s=float(row[2]),
        text=str(row[3]),
        app=str(row[4]),
        window=str(row[5]),
        status=Status(row[6]),
        note=str(row[7]),
    )
