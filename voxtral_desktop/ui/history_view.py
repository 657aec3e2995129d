"""The history panel: search box, newest-first table, copy and delete."""

from __future__ import annotations

import datetime as dt
import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from voxtral_desktop.platform.history import HistoryEntry, HistoryStore, Status

log = logging.getLogger(__name__)

COLUMNS = ("Time", "Where", "Length", "Text")
_STATUS_MARK = {Status.RECORDING: "● ", Status.NOT_DELIVERED: "⚠ ", Status.INTERRUPTED: "✕ ", Status.DONE: ""}


class HistoryView(QWidget):
    copied = Signal(str)

    def __init__(self, store: HistoryStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search history…")
        self.search.setObjectName("historySearch")
        self.search.setClearButtonEnabled(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("historyTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.copy_button = QPushButton("Copy")
        self.delete_button = QPushButton("Delete")
        buttons = QHBoxLayout()
        buttons.addWidget(self.search, 1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.table)
        self.search.textChanged.connect(self.refresh)
        self.copy_button.clicked.connect(self.copy_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        QShortcut(QKeySequence.StandardKey.Copy, self.table, self.copy_selected)
        QShortcut(QKeySequence.StandardKey.Delete, self.table, self.delete_selected)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_id()
        entries = self.store.search(self.search.text())
        self.table.setRowCount(len(entries))
        for row, e in enumerate(entries):
            for col, value in enumerate(_cells(e)):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, e.id)
                if e.note:
                    item.setToolTip(e.note)
                self.table.setItem(row, col, item)
            if e.id == selected:
                self.table.selectRow(row)
        self._update_buttons()

    def update_entry(self, entry_id: int) -> None:
        """Refresh one row in place (called as text arrives), or the table if it is new."""
        entry = self.store.get(entry_id)
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == entry_id:
                if entry is None:
                    self.refresh()
                    return
                for col, value in enumerate(_cells(entry)):
                    cell = self.table.item(row, col)
                    if cell is not None:
                        cell.setText(value)
                        cell.setToolTip(entry.note)
                return
        self.refresh()

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def copy_selected(self) -> None:
        entry_id = self.selected_id()
        entry = None if entry_id is None else self.store.get(entry_id)
        if entry is None:
            return
        QGuiApplication.clipboard().setText(entry.text)
        self.copied.emit(entry.text)

    def delete_selected(self) -> None:
        entry_id = self.selected_id()
        if entry_id is not None and self.store.delete(entry_id):
            self.refresh()

    def _update_buttons(self) -> None:
        has = self.selected_id() is not None
        self.copy_button.setEnabled(has)
        self.delete_button.setEnabled(has)


def _cells(e: HistoryEntry) -> tuple[str, str, str, str]:
    when = dt.datetime.fromtimestamp(e.started_at).strftime("%Y-%m-%d %H:%M:%S")
    where = e.window or e.app or "—"
    return when, where, f"{e.duration_s:.1f} s", _STATUS_MARK[e.status] + e.text
