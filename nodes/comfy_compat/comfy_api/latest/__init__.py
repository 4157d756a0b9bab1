"""ComfyUI's `comfy_api.latest`, as far as NodeWeaver supports it: the execution API (ComfyAPI, ComfyAPISync),
the V3 node schema (`io`, `ui`) and `ComfyExtension`, which a pack's `comfy_entrypoint()` returns.

Names ComfyUI has and this module lacks (video inputs, Types ...) fail with an ImportError naming them, so a
pack that needs them fails to load on its own and the other packs still load.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from nodes.comfy_compat.comfy_api.latest import _io as io
from nodes.comfy_compat.comfy_api.latest import _ui as ui
from nodes.comfy_compat.comfy_api.v0_0_2 import ComfyAPI, ComfyAPISync


class ComfyExtension(ABC):
    """What `comfy_entrypoint()` returns: the pack's V3 node classes, from `get_node_list`."""

    async def on_load(self) -> None:  # noqa: B027 - optional hook, as in ComfyUI
        """Called once when the pack loads (ComfyUI's hook for global resources)."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The pack's node classes."""


comfy_io = io

__all__ = ["ComfyAPI", "ComfyAPISync", "ComfyExtension", "io", "comfy_io", "ui"]
