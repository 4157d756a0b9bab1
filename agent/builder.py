"""A tiny builder for API-format workflows: add nodes, link outputs, get the JSON."""

from __future__ import annotations

from typing import Any


class WorkflowBuilder:
    def __init__(self) -> None:
        self.prompt: dict[str, dict[str, Any]] = {}
        self._next = 1

    def add(self, class_type: str, title: str | None = None, **inputs: Any) -> str:
        node_id = str(self._next)
        self._next += 1
        entry: dict[str, Any] = {"class_type": class_type, "inputs": dict(inputs)}
        if title:
            entry["_meta"] = {"title": title}
        self.prompt[node_id] = entry
        return node_id

    @staticmethod
    def out(node_id: str, slot: int = 0) -> list:
        return [node_id, slot]

    def set(self, node_id: str, **inputs: Any) -> None:
        self.prompt[node_id]["inputs"].update(inputs)

    def classes(self) -> list[str]:
        return [n["class_type"] for n in self.prompt.values()]
