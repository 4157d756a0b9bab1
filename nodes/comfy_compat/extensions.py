"""V3 packs: a pack without NODE_CLASS_MAPPINGS may define `comfy_entrypoint()` returning a ComfyExtension
whose `get_node_list()` names its node classes (ComfyUI's `load_custom_node`). This turns that into the
mappings the registry reads from V1 packs; the classes themselves carry the V1 view (io.ComfyNode).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from types import ModuleType
from typing import Any


class ExtensionError(TypeError):
    """A pack's comfy_entrypoint does not give what ComfyUI expects; the pack fails to load, by name."""


def _resolve(value: Any) -> Any:
    """The value of a coroutine (run on its own event loop, in a thread when this one already runs a loop)."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=run, name="nodeweaver-comfy-entrypoint")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def entrypoint_mappings(module: ModuleType) -> tuple[dict[str, type], dict[str, str]] | None:
    """(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS) from the module's comfy_entrypoint, keyed by each
    schema's node_id; None when the module has no entrypoint. Raises ExtensionError for a wrong shape."""
    entrypoint = getattr(module, "comfy_entrypoint", None)
    if entrypoint is None:
        return None
    if not callable(entrypoint):
        raise ExtensionError("comfy_entrypoint is not callable")
    extension = _resolve(entrypoint())
    get_node_list = getattr(extension, "get_node_list", None)
    if not callable(get_node_list):
        raise ExtensionError(f"comfy_entrypoint returned {type(extension).__name__}, not a ComfyExtension")
    node_list = _resolve(get_node_list())
    if not isinstance(node_list, list):
        raise ExtensionError(f"get_node_list returned {type(node_list).__name__}, not a list of node classes")
    mappings: dict[str, type] = {}
    display: dict[str, str] = {}
    for node_cls in node_list:
        if not isinstance(node_cls, type) or not callable(getattr(node_cls, "GET_SCHEMA", None)):
            raise ExtensionError(f"get_node_list holds {node_cls!r}, not an io.ComfyNode class")
        schema = node_cls.GET_SCHEMA()
        mappings[schema.node_id] = node_cls
        if schema.display_name is not None:
            display[schema.node_id] = schema.display_name
    return mappings, display
