from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from voxtral_desktop.platform.history import HistoryStore, Status, default_history_path


def test_utterance_is_saved_as_it_happens_and_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    uid = store.begin(started_at=100.0, app="kate", window="notes.txt — Kate")
    store.update_text(uid, "héllo")
    # Another connection (another process after a crash) already sees the partial text.
    row = sqlite3.connect(path).execute("SELECT text, status FROM utterances WHERE id=?", (uid,)).fetchone()
    assert row == ("héllo", "recording")
    store.update_text(uid, "héllo Straße 日本", duration_s=1.5)
    del store  # no finish(): the app "crashed"

    reopened = HistoryStore(path)
    entry = reopened.get(uid)
    assert entry is not None
    assert entry.text == "héllo Straße 日本"
    assert entry.status is Status.INTERRUPTED
    assert entry.duration_s == 1.5
    assert (entry.app, entry.window) == ("kate", "notes.txt — Kate")


def test_finish_search_delete(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    a = store.begin(started_at=1.0)
    store.finish(a, text="Große Straße", duration_s=2.0)
    b = store.begin(started_at=2.0, app="firefox")
    store.finish(b, text="café 50%_off", duration_s=1.0, status=Status.NOT_DELIVERED, note="window closed")
    assert [e.id for e in store.search()] == [b, a]  # newest first
    assert [e.id for e in store.search("STRASSE")] == [a]  # Unicode case folding: ß == ss
    assert [e.id for e in store.search("CAFÉ")] == [b]
    assert [e.id for e in store.search("%_")] == [b]  # LIKE wildcards are literal
    assert [e.id for e in store.search("firefox")] == [b]  # app names are searched too
    assert store.get(b) is not None and store.get(b).note == "window closed"  # type: ignore[union-attr]
    assert store.delete(a) and not store.delete(a)
    assert [e.id for e in store.search()] == [b]


def test_default_path_is_in_the_user_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_history_path() == tmp_path / "voxtral-desktop" / "history.sqlite3"
