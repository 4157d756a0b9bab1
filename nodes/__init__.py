"""What a node is (spec), which nodes exist (registry, packs) and where their files live (folders).

This package also stands in for ComfyUI's top-level `nodes` module, which custom packs import:
`from nodes import MAX_RESOLUTION`, `nodes.NODE_CLASS_MAPPINGS`. The mappings are views over the built-in
packs, imported on first use, so `import nodes` stays cheap and importing a pack cannot cycle back here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

MAX_RESOLUTION = 16384
EXTENSION_WEB_DIRS: dict[str, str] = {}


class _BuiltinMappingView(Mapping[str, Any]):
    """A read-only merge of one mapping attribute of every built-in pack, collected on first access."""

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute
        self._merged: dict[str, Any] | None = None

    def _data(self) -> dict[str, Any]:
        if self._merged is None:
            from nodes.registry import BUILTIN_PACKS

            merged: dict[str, Any] = {}
            for pack in BUILTIN_PACKS:
                merged.update(getattr(importlib.import_module(pack), self._attribute, {}) or {})
            self._merged = merged
        return self._merged

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        return f"<built-in {self._attribute}: {len(self)} entries>"


NODE_CLASS_MAPPINGS: Mapping[str, type] = _BuiltinMappingView("NODE_CLASS_MAPPINGS")
NODE_DISPLAY_NAME_MAPPINGS: Mapping[str, str] = _BuiltinMappingView("NODE_DISPLAY_NAME_MAPPINGS")
