"""Execution events with ComfyUI's names and fields, delivered to subscribers (CLI, MCP, websocket).

Names: execution_start, execution_cached, executing, progress, executed, execution_error,
execution_interrupted, execution_success. The data dicts carry ComfyUI's keys (prompt_id, node, ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

EVENT_NAMES = ("execution_start", "execution_cached", "executing", "progress", "executed", "execution_error",
               "execution_interrupted", "execution_success")


class ExecutionEvent(BaseModel):
    """One event as ComfyUI's websocket sends it: {"type": name, "data": {...}}."""

    type: str
    data: dict[str, Any] = Field(default_factory=dict)

    def to_comfy(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}


Subscriber = Callable[[ExecutionEvent], None]


class EventBus:
    """Fan-out of events to subscribers; a failing subscriber is logged and never breaks a run."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            with self._lock:
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event_type: str, **data: Any) -> None:
        if not self._subscribers:
            return
        event = ExecutionEvent(type=event_type, data=data)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(event)
            except Exception:  # a broken listener must not break execution
                log.exception("event subscriber failed on %s", event_type)


def timestamp_ms() -> int:
    return int(time.time() * 1000)
