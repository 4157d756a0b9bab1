"""ComfyUI's `server.PromptServer`, as far as custom node packs use it at import and run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

try:
    from aiohttp import web

    _RouteTable: Any = web.RouteTableDef
except ImportError:  # pragma: no cover - aiohttp is a core dependency
    _RouteTable = None


class PromptServer:
    """Collects the routes packs declare and forwards `send_sync` messages to subscribers."""

    instance: PromptServer

    def __init__(self) -> None:
        self.routes = _RouteTable() if _RouteTable is not None else []
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.listeners: list[Callable[[str, Any, str | None], None]] = []

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        for listener in list(self.listeners):
            listener(event, data, sid)

    def add_on_prompt_handler(self, handler: Callable[[dict], dict]) -> None:
        """Accepted for compatibility; NodeWeaver does not rewrite prompts through handlers."""


PromptServer.instance = PromptServer()
