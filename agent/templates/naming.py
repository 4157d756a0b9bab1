"""Naming widget values: which input each entry of a UI node's `widgets_values` is.

Converting a UI workflow to the API form needs every node's widget order. A registry knows it for its own
classes; the templates use hundreds of newer classes too. Many template nodes serialize each widget as a named
input entry, so the templates themselves teach the order of those classes: `learned_object_info` reads it from
every node whose named entries account for all its values, and `naming_registry` layers a real registry over
that (the registry wins where both know a class).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from nodes.registry import NodeRegistry
from nodes.spec import WIDGET_TYPES

CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})


def ui_nodes(workflow: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node object of a UI workflow: the top level and every subgraph definition."""
    graphs = [workflow] + list((workflow.get("definitions") or {}).get("subgraphs") or [])
    for graph in graphs:
        for node in graph.get("nodes") or [] if isinstance(graph, dict) else []:
            if isinstance(node, dict) and isinstance(node.get("type"), str):
                yield node


def _named_widgets(node: dict[str, Any]) -> list[tuple[str, str]]:
    entries = node.get("inputs") if isinstance(node.get("inputs"), list) else []
    return [(str(e.get("name")), str(e.get("type") or "STRING")) for e in entries
            if isinstance(e, dict) and isinstance(e.get("widget"), dict) and e.get("name")]


def _entry(class_type: str, widgets: list[tuple[str, str]], values: list[Any]) -> dict[str, Any] | None:
    """An /object_info entry naming the widgets in order, or None when the named entries miss some values."""
    controls = sum(1 for v in values if isinstance(v, str) and v in CONTROL_VALUES)
    if len(widgets) != len(values) - controls:
        return None
    required: dict[str, Any] = {}
    i = 0
    for name, kind in widgets:
        i += 1
        control = i < len(values) and isinstance(values[i], str) and values[i] in CONTROL_VALUES
        if control:
            i += 1
        kind = kind if kind in WIDGET_TYPES else "STRING"  # upload buttons and the like still take a value
        options: dict[str, Any] = {"control_after_generate": True} if control else {}
        required[name] = ["COMBO", {"options": [], **options}] if kind == "COMBO" else [kind, options]
    return {"input": {"required": required}, "input_order": {"required": list(required)}, "output": [],
            "output_name": [], "output_is_list": [], "name": class_type, "display_name": class_type,
            "category": "templates", "output_node": False, "description": ""}


def learned_object_info(workflows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Class → /object_info entry for classes some template node serializes completely."""
    learned: dict[str, dict[str, Any]] = {}
    for workflow in workflows:
        for node in ui_nodes(workflow):
            values = node.get("widgets_values")
            if node["type"] in learned or not isinstance(values, list) or not values:
                continue
            entry = _entry(node["type"], _named_widgets(node), values)
            if entry is not None:
                learned[node["type"]] = entry
    return learned


def naming_registry(registry: NodeRegistry, learned: dict[str, dict[str, Any]]) -> NodeRegistry:
    """A catalog-only registry: the learned classes, overridden by everything `registry` declares."""
    naming = NodeRegistry()
    naming.import_catalog(learned, source="templates")
    naming.import_catalog(registry.object_info(), source="registry")
    return naming
