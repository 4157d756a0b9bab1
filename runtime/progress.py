"""Progress reporting from inside a node, ComfyUI's `comfy.utils.ProgressBar` style.

The executor sets the current node in a context variable; a node calls `ProgressBar(total).update(1)` or
`report_progress(value, total)`, and a `progress` event goes out with the right node and prompt ids.
Long-running nodes should also call `check_interrupted()` so an interrupt stops them between steps.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass


class InterruptedExecution(Exception):
    """Raised inside a node when the user interrupted the run (ComfyUI's InterruptProcessingException)."""


@dataclass
class NodeContext:
    prompt_id: str
    node_id: str
    report: Callable[[float, float, str, str], None]
    interrupted: Callable[[], bool]


current_node: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar("nodeweaver_node", default=None)


def report_progress(value: float, total: float) -> None:
    ctx = current_node.get()
    if ctx is not None:
        ctx.report(value, total, ctx.prompt_id, ctx.node_id)


def check_interrupted() -> None:
    ctx = current_node.get()
    if ctx is not None and ctx.interrupted():
        raise InterruptedExecution("interrupted by the user")


class ProgressBar:
    """Drop-in for comfy.utils.ProgressBar."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.current = 0

    def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total) if self.total else value
        report_progress(self.current, self.total)

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)
