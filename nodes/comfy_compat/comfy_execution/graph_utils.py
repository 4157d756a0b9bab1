"""ComfyUI's `comfy_execution.graph_utils`: the engine's own GraphBuilder, so expansions it returns are understood."""

from __future__ import annotations

from runtime.comfy_graph import ExecutionBlocker, GraphBuilder, GraphNode, Node, add_graph_prefix, is_link

__all__ = ["ExecutionBlocker", "GraphBuilder", "GraphNode", "Node", "add_graph_prefix", "is_link"]
