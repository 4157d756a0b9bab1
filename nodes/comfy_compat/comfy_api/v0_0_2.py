"""ComfyUI's `comfy_api.v0_0_2`: ComfyAPI (async) and ComfyAPISync, whose `execution.set_progress` reports
progress for the running node through NodeWeaver's progress events."""

from __future__ import annotations

from typing import Any

from runtime import progress


def _report(value: float, max_value: float, node_id: str | None) -> None:
    ctx = progress.current_node.get()
    if ctx is None:
        # ComfyUI also refuses: outside a running node there is no prompt to attach the progress to.
        raise ValueError("set_progress called outside a running node; there is no prompt to report to")
    if max_value <= 0:
        raise ValueError(f"max_value must be positive, got {max_value}")
    ctx.report(float(value), float(max_value), ctx.prompt_id, ctx.node_id if node_id is None else str(node_id))


class _SyncExecution:
    def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                     preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        """Report `value` of `max_value` for the running node (or `node_id`); previews are not sent."""
        _report(value, max_value, node_id)


class _AsyncExecution:
    async def set_progress(self, value: float, max_value: float, node_id: str | None = None,
                           preview_image: Any = None, ignore_size_limit: bool = False) -> None:
        """Report `value` of `max_value` for the running node (or `node_id`); previews are not sent."""
        _report(value, max_value, node_id)


class ComfyAPI:
    """The async API object a node creates at import time (`api = ComfyAPI()`)."""

    VERSION = "0.0.2"

    def __init__(self) -> None:
        self.execution = _AsyncExecution()


class ComfyAPISync:
    """The same API for synchronous node functions."""

    VERSION = "0.0.2"

    def __init__(self) -> None:
        self.execution = _SyncExecution()


__all__ = ["ComfyAPI", "ComfyAPISync"]
