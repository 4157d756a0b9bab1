"""Node outputs cached by signature, bounded by entry count and by estimated size (LRU).

The byte budget defaults to a fraction of the memory the machine has available when the cache is made
(read from /proc/meminfo, or os.sysconf elsewhere; no psutil), so a small machine keeps fewer images and
latents in memory and a big one more, instead of one fixed figure that is wrong for both.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MEMORY_FRACTION = 0.25
_FALLBACK_BYTES = 4 * 1024 ** 3  # when the platform says nothing about its memory
_SAMPLE = 1000                   # containers longer than this are estimated from a sample


def available_memory() -> int | None:
    """Bytes of memory available to new allocations now, or None when the platform does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        log.debug("/proc/meminfo is not readable; asking os.sysconf")
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def default_budget(fraction: float = DEFAULT_MEMORY_FRACTION) -> int:
    """The default byte budget: `fraction` of the available memory (4 GiB when it cannot be read)."""
    available = available_memory()
    return int(available * fraction) if available else _FALLBACK_BYTES


def estimate_size(value: Any, _depth: int = 0) -> int:
    """Bytes a cached value holds, roughly: tensors by numel*element_size, arrays by nbytes, containers by
    their content (long ones from a sample of their first items, scaled to their length)."""
    if _depth > 6:
        return 0
    element_size = getattr(value, "element_size", None)
    numel = getattr(value, "numel", None)
    if callable(element_size) and callable(numel):  # torch tensors
        try:
            return int(element_size() * numel())
        except (TypeError, ValueError, RuntimeError):  # a tensor-like object that is not one
            return sys.getsizeof(value, 64)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):  # numpy arrays, memoryviews
        return nbytes
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, dict):
        value = list(value.values())
        overhead = 64
    elif isinstance(value, list | tuple):
        overhead = 56
    else:
        return sys.getsizeof(value, 64)
    sample = value[:_SAMPLE]
    total = sum(estimate_size(v, _depth + 1) for v in sample)
    if len(value) > len(sample):
        total = total * len(value) // len(sample)
    return overhead + 8 * len(value) + total


@dataclass(slots=True)
class CacheEntry:
    outputs: list[list[Any]]
    ui: dict[str, Any] | None
    size: int


class OutputCache:
    """LRU cache of node outputs, evicting the least recently used entries to stay within `max_entries` and
    `max_bytes` (estimated). `max_bytes=None` means `memory_fraction` of the memory available now.
    `max_entries=0` or `enabled=False` turns caching off."""

    def __init__(self, max_entries: int = 200_000, max_bytes: int | None = None, enabled: bool = True, *,
                 memory_fraction: float = DEFAULT_MEMORY_FRACTION) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes if max_bytes is not None else default_budget(memory_fraction)
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

    def contains(self, key: Any) -> bool:
        """Whether `key` is cached, without counting a hit or refreshing its place (for execution_cached)."""
        return self.enabled and key in self._entries

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
