"""ComfyUI's `comfy.comfy_types`: re-exports node_typing, as packs import from either."""

from __future__ import annotations

from nodes.comfy_compat.comfy.comfy_types.node_typing import (
    IO,
    CheckLazyMixin,
    ComfyNodeABC,
    FileLocator,
    HiddenInputTypeDict,
    InputTypeDict,
    InputTypeOptions,
)

__all__ = ["IO", "CheckLazyMixin", "ComfyNodeABC", "FileLocator", "HiddenInputTypeDict", "InputTypeDict",
           "InputTypeOptions"]
