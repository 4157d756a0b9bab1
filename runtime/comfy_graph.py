"""Graph-building helpers that ComfyUI node packs use: GraphBuilder, is_link and ExecutionBlocker.

They live in runtime/ so both the engine (which expands graphs and honours blockers) and the
`comfy_execution` stand-ins for packs share one definition; an `isinstance` check only works with one class.
A node that expands returns `{"result": ..., "expand": GraphBuilder.finalize()}`; node ids in an expansion must
not collide with the outer prompt's ids or with another expansion's, so a builder prefixes every id it makes.
The engine sets the prefix root (the expanding node's id) with `GraphBuilder.set_default_prefix` before it
calls a node, in a context variable so concurrent runs never see each other's prefixes.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any


def is_link(value: Any) -> bool:
    """True for an API-format link `[node_id: str, output_index: int]` (a float index is tolerated, as ComfyUI)."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int | float) and not isinstance(value[1], bool))


class ExecutionBlocker:
    """Returned as an output value to block every node that consumes it.

    With a message, the consumer fails with that message; with None, the consumer (and what depends on it)
    is skipped silently. Prefer lazy inputs where possible: a blocker is for outputs that must not run.
    """

    def __init__(self, message: str | None) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"


@dataclass
class _PrefixState:
    root: str = ""
    call_index: int = 0
    graph_index: int = 0


_prefix: contextvars.ContextVar[_PrefixState] = contextvars.ContextVar("nodeweaver_graph_prefix")
_GLOBAL_PREFIX = _PrefixState()


def _state() -> _PrefixState:
    return _prefix.get(_GLOBAL_PREFIX)


class GraphNode:
    """One node of a graph under construction (ComfyUI's graph_utils.Node)."""

    def __init__(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id = node_id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        """A link to this node's output `index`, to pass as another node's input."""
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        """Set an input; None removes it (an optional input left unconnected)."""
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, override_display_id: str) -> None:
        self.override_display_id = override_display_id

    def serialize(self) -> dict[str, Any]:
        data: dict[str, Any] = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            data["override_display_id"] = self.override_display_id
        return data


class GraphBuilder:
    """Builds an API-format graph whose node ids carry a prefix unique to this expansion."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = GraphBuilder.alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, GraphNode] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        """Called by the engine before running a node: builders made inside it get ids under `prefix_root`."""
        _prefix.set(_PrefixState(str(prefix_root), int(call_index), int(graph_index)))

    @classmethod
    def alloc_prefix(cls, root: str | None = None, call_index: int | None = None,
                     graph_index: int | None = None) -> str:
        """`root.call.graph.`; every allocation advances the graph index so two builders never share ids."""
        state = _state()
        root = state.root if root is None else root
        call_index = state.call_index if call_index is None else call_index
        graph_index = state.graph_index if graph_index is None else graph_index
        state.graph_index += 1
        return f"{root}.{call_index}.{graph_index}."

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> GraphNode:  # noqa: A002 - ComfyUI's name
        """Add a node (or return the existing one with that id); inputs may be literals or `.out(i)` links."""
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        full_id = self.prefix + str(id)
        existing = self.nodes.get(full_id)
        if existing is not None:
            return existing
        made = GraphNode(full_id, class_type, dict(inputs))
        self.nodes[full_id] = made
        return made

    def lookup_node(self, id: str) -> GraphNode | None:  # noqa: A002 - ComfyUI's name
        return self.nodes.get(self.prefix + str(id))

    def finalize(self) -> dict[str, dict[str, Any]]:
        """The graph in API format: {id: {"class_type", "inputs"}}."""
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Rewire every input linked to `node_id`'s output `index` to `new_value` (None: drop the input)."""
        target = self.prefix + str(node_id)
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and value[0] == target and value[1] == index:
                    node.set_input(key, new_value)

    def remove_node(self, id: str) -> None:  # noqa: A002 - ComfyUI's name
        self.nodes.pop(self.prefix + str(id), None)


def add_graph_prefix(graph: dict[str, dict[str, Any]], outputs: tuple | list,
                     prefix: str) -> tuple[dict[str, dict[str, Any]], tuple]:
    """Prefix every node id of `graph` and of the links inside it and in `outputs` (to splice a graph in)."""
    renamed: dict[str, dict[str, Any]] = {}
    for node_id, info in graph.items():
        inputs = {name: [prefix + value[0], value[1]] if is_link(value) else value
                  for name, value in info.get("inputs", {}).items()}
        renamed[prefix + node_id] = {"class_type": info["class_type"], "inputs": inputs}
    new_outputs = tuple([prefix + out[0], out[1]] if is_link(out) else out for out in outputs)
    return renamed, new_outputs


# ComfyUI's name for the node class, for packs that import it.
Node = GraphNode
