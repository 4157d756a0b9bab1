"""ComfyUI's `comfy_execution.graph`, as far as packs import it: ExecutionBlocker (the engine's own class)."""

from __future__ import annotations

from runtime.comfy_graph import ExecutionBlocker

__all__ = ["ExecutionBlocker"]
