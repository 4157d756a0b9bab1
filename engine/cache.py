"""Node outputs cached by signature, bounded by entry count and by estimated size (LRU)."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


def estimate_size(value: Any, _depth: int = 0) -> int:
    """Bytes a cached value holds, roughly: tensors and arrays by their buffers, containers by content."""
    if _depth > 4:
        return 0
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    element_size = getattr(value, "element_size", None)
    numel = getattr(value, "numel", None)
    if callable(element_size) and callable(numel):
        try:
            return int(element_size() * numel())
        except Exception:
            return 0
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, list | tuple):
        return 56 + sum(estimate_size(v, _depth + 1) for v in value[:1000])
    if isinstance(value, dict):
        return 64 + sum(estimate_size(v, _depth + 1) for v in list(value.values())[:1000])
    return sys.getsizeof(value, 64)


@dataclass(slots=True)
class CacheEntry:
    outputs: list[list[Any]]
    ui: dict[str, Any] | None
    size: int


class OutputCache:
    """LRU cache of node outputs. `max_entries=0` or `enabled=False` turns caching off."""

    def __init__(self, max_entries: int = 200_000, max_bytes: int = 4 * 1024 ** 3, enabled: bool = True) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.enabled = enabled and max_entries > 0
        self._entries: OrderedDict[Any, CacheEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> CacheEntry | None:
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Any, outputs: list[list[Any]], ui: dict[str, Any] | None) -> None:
        if not self.enabled:
            return
        size = estimate_size(outputs) + (estimate_size(ui) if ui else 0)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._entries[key] = CacheEntry(outputs, ui, size)
            self._bytes += size
            while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes
