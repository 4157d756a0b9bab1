"""The compiler's product: what the engine runs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Plan(BaseModel):
    """The nodes the requested outputs need, in dependency order, with normalised inputs.

    `prompt` is API-format JSON restricted to those nodes; literal inputs are already converted to their
    declared types and links are `[node_id, slot]` with string ids.
    """

    prompt: dict[str, dict[str, Any]]
    order: list[str]
    outputs: list[str]
    extra: dict[str, Any] = Field(default_factory=dict)

    def dependencies(self, node_id: str) -> list[str]:
        """Ids of the nodes whose outputs this node reads."""
        deps = []
        for value in self.prompt[node_id].get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                deps.append(value[0])
        return deps
