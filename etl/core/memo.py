"""A small per-process memo, least recently used out first, safe across threads; and the key of
a folder by its content (for what is read from the folder, such as the mappings catalog)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from etl.core.files import folder_digest


class Memo:
    """At most ``size`` values, the least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            found = self._items.pop(key, None)
            if found is not None:
                self._items[key] = found
            return found

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items.pop(key, None)
            while len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def folder_key(folder: Path) -> tuple[str, str] | None:
    """``(folder, digest of every file's name and bytes under it)``; None when a file cannot be
    read (the caller then does the work uncached, and its own error says what is wrong)."""
    try:
        return str(folder), folder_digest(folder)
    except OSError:
        return None
