"""The model cache hook for torch nodes: load once per process, share, offload under memory pressure.

Keyed by file path, modification time and a kind string, so an edited checkpoint is reloaded and two
loaders of the same file share one object. Objects with `.to(device)` are moved to the CPU, least recently
used first, when the GPU lacks room for what is about to run. torch is imported only when needed.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def model_bytes(obj: Any) -> int:
    """Parameter bytes of a torch module, a diffusers pipeline (its components) or a tuple of them."""
    total = 0
    parameters = getattr(obj, "parameters", None)
    if callable(parameters):
        try:
            return sum(p.numel() * p.element_size() for p in parameters())
        except (AttributeError, TypeError, RuntimeError) as exc:  # `parameters` that is not torch's
            log.debug("cannot size %s: %s", type(obj).__name__, exc)
            return 0
    components = getattr(obj, "components", None)
    if isinstance(components, dict):
        return sum(model_bytes(c) for c in components.values() if c is not None)
    if isinstance(obj, tuple | list):
        return sum(model_bytes(c) for c in obj)
    return total


def best_device() -> str:
    """cuda, then mps, then cpu."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def free_gpu_bytes() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return int(free)


@dataclass
class _Entry:
    value: Any
    size: int
    device: str


class ModelCache:
    """Process-wide store of loaded models."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self.loads = 0

    @staticmethod
    def key(path: Path, kind: str = "model", **options: Any) -> tuple:
        path = Path(path)
        try:
            stat = path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = (0, 0)
        return (str(path.resolve()), stamp, kind, tuple(sorted(options.items())))

    def load(self, path: Path, loader: Callable[[], Any], *, kind: str = "model", device: str | None = None,
             **options: Any) -> Any:
        """The cached object for (path, mtime, kind, options), loading it with `loader()` the first time."""
        key = self.key(path, kind, **options)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry.value
            stale = [k for k in self._entries if k[0] == key[0] and k[2] == kind and k[1] != key[1]]
            for old in stale:
                self._drop(old)
            value = loader()
            self.loads += 1
            self._entries[key] = _Entry(value, model_bytes(value), device or "cpu")
            return value

    def make_room(self, needed_bytes: int, keep: Any = None) -> None:
        """Move least recently used models off the GPU until `needed_bytes` are free there."""
        free = free_gpu_bytes()
        if free is None or free >= needed_bytes:
            return
        with self._lock:
            for key, entry in list(self._entries.items()):
                if free >= needed_bytes:
                    break
                if entry.device == "cpu" or entry.value is keep:
                    continue
                self._to(entry, "cpu")
                log.info("offloaded %s to the CPU (%d MiB)", key[0], entry.size // 2 ** 20)
                free = free_gpu_bytes() or free

    def to_device(self, value: Any, device: str) -> Any:
        """Move a cached model to a device (making room first when that is a GPU); a model offloaded under
        memory pressure comes back this way before it is used."""
        with self._lock:
            entry = next((e for e in self._entries.values() if e.value is value), None)
            if entry is None or entry.device == device:
                return value
            if device.startswith("cuda"):
                self.make_room(entry.size, keep=value)
            self._to(entry, device)
            return value

    def free(self, path: Path | None = None) -> int:
        """Forget cached models (all, or those of one file); returns how many were dropped."""
        with self._lock:
            keys = [k for k in self._entries if path is None or k[0] == str(Path(path).resolve())]
            for key in keys:
                self._drop(key)
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        return len(keys)

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"path": k[0], "kind": k[2], "bytes": e.size, "device": e.device} for k, e in self._entries.items()]

    def _to(self, entry: _Entry, device: str) -> None:
        parts = entry.value if isinstance(entry.value, tuple | list) else (entry.value,)
        for part in parts:  # modules move in place (torch's .to on a Module returns itself)
            mover = getattr(part, "to", None)
            if callable(mover):
                mover(device)
        entry.device = device

    def _drop(self, key: tuple) -> None:
        self._entries.pop(key, None)


model_cache = ModelCache()
