"""ComfyUI's UI ("workflow") format → API format, the way the ComfyUI frontend's graphToPrompt does it.

Handled: widgets_values mapped onto widget inputs with the registry (skipping the frontend's
"control after generate" values), widget inputs turned into links, Reroute and PrimitiveNode
(frontend-only nodes that are resolved away), bypassed nodes (mode 4: their matching input is passed
through) and muted nodes (mode 2: dropped), notes and groups ignored, and subgraphs
(`definitions.subgraphs`) flattened to ids like "12:5", nested to any depth. Every walk is iterative.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from compiler.errors import WorkflowError, WorkflowFormatError
from nodes.registry import NodeRegistry
from nodes.spec import NodeSpec

MODE_MUTED = 2
MODE_BYPASS = 4
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode", "Label (rgthree)"})
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
SUBGRAPH_INPUT_NODE = -10
SUBGRAPH_OUTPUT_NODE = -20
MAX_EXPANDED_NODES = 250_000
"""Nodes a UI workflow may expand to: subgraphs instantiated inside subgraphs multiply (2 instances per level,
32 levels would be 4 billion nodes), so the expansion stops with an error past this many."""


@dataclass(slots=True)
class _Link:
    origin_id: Any
    origin_slot: int
    target_id: Any
    target_slot: int
    type: str


@dataclass
class _Graph:
    """One graph's nodes and links: the top level, or one subgraph definition."""

    nodes: dict[Any, dict]
    links: dict[Any, _Link]
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    name: str = ""


@dataclass
class _Ctx:
    """A graph instantiated at a path of subgraph instance ids (the top level has an empty path)."""

    graph: _Graph
    path: tuple[str, ...]
    parent: _Ctx | None = None
    instance: dict | None = None

    def api_id(self, node_id: Any) -> str:
        return ":".join(self.path + (str(node_id),))


def _slots(node: Any) -> list[dict]:
    """A node's `inputs` entries that are objects (files from the wild hold anything there)."""
    entries = node.get("inputs") if isinstance(node, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _is_marker(value: Any, markers: frozenset[str]) -> bool:
    return isinstance(value, str) and value in markers


def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list)


def _norm_id(value: Any) -> Any:
    """Node ids are ints in most files and strings in some; compare them as one kind.

    Anything that cannot be an id (lists, objects, NaN, booleans) gives None, so it links nothing."""
    if isinstance(value, str):
        digits = value[1:] if value.startswith("-") else value
        return int(value) if digits.isdigit() and len(digits) < 19 else value
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _text(value: Any) -> str:
    """A type or name field as text; only scalars count (str() of a deeply nested list would recurse)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _parse_links(raw_links: Any) -> dict[Any, _Link]:
    links: dict[Any, _Link] = {}
    for raw in raw_links if isinstance(raw_links, list) else []:
        try:
            if isinstance(raw, list | tuple):
                link_id, origin_id, origin_slot, target_id, target_slot = raw[:5]
                link_type = raw[5] if len(raw) > 5 else "*"
            elif isinstance(raw, dict):
                link_id, origin_id, origin_slot = raw["id"], raw["origin_id"], raw["origin_slot"]
                target_id, target_slot, link_type = raw["target_id"], raw["target_slot"], raw.get("type", "*")
            else:
                continue
            key = _norm_id(link_id)
            if key is None:
                continue
            links[key] = _Link(_norm_id(origin_id), int(origin_slot), _norm_id(target_id), int(target_slot),
                               _text(link_type) or "*")
        except (KeyError, ValueError, TypeError, OverflowError):  # OverflowError: int() of an infinite slot
            continue
    return links


def _parse_graph(data: dict) -> _Graph:
    nodes = {}
    raw_nodes = data.get("nodes")
    for node in raw_nodes if isinstance(raw_nodes, list) else []:
        if isinstance(node, dict) and _norm_id(node.get("id")) is not None:
            nodes[_norm_id(node["id"])] = node

    def objects(key: str) -> list[dict]:
        value = data.get(key)
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

    return _Graph(nodes=nodes, links=_parse_links(data.get("links")), inputs=objects("inputs"),
                  outputs=objects("outputs"), name=_text(data.get("name")))


class UIConverter:
    """Converts one UI workflow; collects warnings for what could not be carried over."""

    def __init__(self, workflow: dict, registry: NodeRegistry):
        if not is_ui_workflow(workflow):
            raise WorkflowFormatError([WorkflowError(
                type="invalid_workflow_format", message="not a ComfyUI UI workflow: it has no 'nodes' list")])
        self.registry = registry
        self.top = _parse_graph(workflow)
        self.subgraphs: dict[str, _Graph] = {}
        definitions = workflow.get("definitions") or {}
        for sub in (definitions.get("subgraphs") or []) if isinstance(definitions, dict) else []:
            if isinstance(sub, dict) and _text(sub.get("id")):
                self.subgraphs[_text(sub["id"])] = _parse_graph(sub)
        self.warnings: list[WorkflowError] = []
        self._specs: dict[str, NodeSpec | None] = {}
        self._step_limit = 10 * (len(self.top.links) + sum(len(g.links) for g in self.subgraphs.values())) + 100

    # ---- public -----------------------------------------------------------------------------------------
    def convert(self) -> dict[str, dict[str, Any]]:
        prompt: dict[str, dict[str, Any]] = {}
        pending = deque([_Ctx(self.top, ())])
        expanded = 0
        while pending:
            ctx = pending.popleft()
            expanded += len(ctx.graph.nodes)
            if expanded > MAX_EXPANDED_NODES:
                raise WorkflowFormatError([WorkflowError(
                    type="invalid_workflow_format",
                    message=f"the workflow's subgraphs expand to more than {MAX_EXPANDED_NODES:,} nodes",
                    extra_info={"limit": MAX_EXPANDED_NODES})])
            for node_id, node in ctx.graph.nodes.items():
                node_type = _text(node.get("type"))
                mode = node.get("mode", 0)
                if node_type in FRONTEND_ONLY or mode in (MODE_MUTED, MODE_BYPASS):
                    continue
                if node_type in self.subgraphs:
                    if len(ctx.path) > 32 or str(node_id) in ctx.path:
                        self._warn(ctx.api_id(node_id), node_type, "subgraph nesting too deep or recursive; skipped")
                        continue
                    pending.append(_Ctx(self.subgraphs[node_type], ctx.path + (str(node_id),), ctx, node))
                    continue
                prompt[ctx.api_id(node_id)] = self._api_node(ctx, node_id, node)
        return prompt

    # ---- one node ---------------------------------------------------------------------------------------
    def _spec(self, class_type: str) -> NodeSpec | None:
        if class_type not in self._specs:
            try:
                self._specs[class_type] = self.registry.spec(class_type) if class_type in self.registry else None
            except Exception:
                self._specs[class_type] = None
        return self._specs[class_type]

    def _api_node(self, ctx: _Ctx, node_id: Any, node: dict) -> dict[str, Any]:
        class_type = _text(node.get("type"))
        api_id = ctx.api_id(node_id)
        spec = self._spec(class_type)
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values")
        if spec is not None:
            inputs.update(self._widget_inputs(spec, values, api_id))
        elif isinstance(node.get("widgets_values_named"), dict):
            inputs.update({k: v for k, v in node["widgets_values_named"].items()
                           if not k.startswith("control_after_generate")})
        elif isinstance(values, dict):
            inputs.update(values)
        elif isinstance(values, list) and values:
            self._warn(api_id, class_type, f"node type {class_type!r} is unknown, so its {len(values)} widget "
                                           "value(s) could not be matched to inputs")
        for slot_input in _slots(node):
            widget = slot_input.get("widget")
            name = widget.get("name") if isinstance(widget, dict) and widget.get("name") else slot_input.get("name")
            link_id = slot_input.get("link")
            if not isinstance(name, str) or not name or link_id is None:
                continue
            resolved = self._resolve(ctx, _norm_id(link_id), api_id, class_type)
            if resolved is None:
                continue
            kind, payload = resolved
            inputs[name] = payload if kind == "value" else list(payload)
        title = node.get("title") or (spec.display_name if spec else class_type)
        return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}

    def _widget_inputs(self, spec: NodeSpec, values: Any, api_id: str) -> dict[str, Any]:
        widgets = spec.widget_inputs
        if isinstance(values, dict):
            return {w.name: values[w.name] for w in widgets if w.name in values}
        if not isinstance(values, list):
            return {}
        out: dict[str, Any] = {}
        i = 0
        for widget in widgets:
            if i >= len(values):
                break
            out[widget.name] = values[i]
            i += 1
            if widget.has_control_widget and i < len(values) and _is_marker(values[i], CONTROL_VALUES):
                i += 1
        return out

    # ---- link resolution ------------------------------------------------------------------------------
    def _resolve(self, ctx: _Ctx, link_id: Any, api_id: str, class_type: str):
        """Follow a link through reroutes, primitives, bypassed nodes and subgraph borders.

        Returns ("link", (api_id, slot)), ("value", literal), or None (leave the input's widget value).
        """
        steps = 0
        while True:
            steps += 1
            if steps > self._step_limit:
                self._warn(api_id, class_type, "a link loops through reroutes or bypassed nodes; dropped")
                return None
            link = ctx.graph.links.get(link_id)
            if link is None:
                self._warn(api_id, class_type, f"link {link_id} is missing from the workflow; input left unlinked")
                return None
            origin = link.origin_id
            if origin == SUBGRAPH_INPUT_NODE:
                if ctx.parent is None or ctx.instance is None:
                    return None
                found = self._instance_input(ctx, link.origin_slot)
                if found is None:
                    return None
                kind, payload = found
                if kind == "link":
                    link_id, ctx = payload, ctx.parent
                    continue
                return found
            node = ctx.graph.nodes.get(origin)
            if node is None:
                self._warn(api_id, class_type, f"link {link_id} comes from node {origin}, which does not exist")
                return None
            node_type = _text(node.get("type"))
            mode = node.get("mode", 0)
            if node_type == "Reroute":
                upstream = _slots(node)[0].get("link") if _slots(node) else None
                if upstream is None:
                    return None
                link_id = _norm_id(upstream)
                continue
            if node_type == "PrimitiveNode":
                values = node.get("widgets_values") or []
                return ("value", values[0]) if values else None
            if mode == MODE_MUTED:
                return None
            if mode == MODE_BYPASS:
                upstream = self._bypass_input(node, link)
                if upstream is None:
                    return None
                link_id = upstream
                continue
            if node_type in self.subgraphs:
                sub = self.subgraphs[node_type]
                inner = self._subgraph_output_link(sub, link.origin_slot)
                if inner is None:
                    self._warn(api_id, class_type, f"subgraph {sub.name or node_type} output {link.origin_slot} "
                                                   "is not connected inside")
                    return None
                ctx = _Ctx(sub, ctx.path + (str(origin),), ctx, node)
                link_id = inner
                continue
            if node_type in FRONTEND_ONLY:
                return None
            return ("link", (ctx.api_id(origin), link.origin_slot))

    def _instance_input(self, ctx: _Ctx, slot: int):
        """What feeds subgraph input `slot` of this instance: an outer link, a widget value, or nothing."""
        sub_inputs = ctx.graph.inputs
        name = sub_inputs[slot].get("name") if 0 <= slot < len(sub_inputs) else None
        instance = ctx.instance or {}
        entries = _slots(instance)
        entry = next((e for e in entries if name is not None and e.get("name") == name), None)
        if entry is None and name is None and 0 <= slot < len(entries):
            entry = entries[slot]
        if entry is not None and entry.get("link") is not None:
            return ("link", _norm_id(entry["link"]))
        values = instance.get("widgets_values")
        if isinstance(values, list) and values and name is not None:
            widget_names = [i.get("name") for i in sub_inputs if self._is_widget_subgraph_input(ctx.graph, i)]
            if len(widget_names) == len(values) and name in widget_names:
                return ("value", values[widget_names.index(name)])
        return None

    def _is_widget_subgraph_input(self, graph: _Graph, sub_input: dict) -> bool:
        link_ids = sub_input.get("linkIds")
        for link_id in link_ids if isinstance(link_ids, list) else []:
            link = graph.links.get(_norm_id(link_id))
            if link is None:
                continue
            target = graph.nodes.get(link.target_id)
            if target is None:
                continue
            slots = target.get("inputs") if isinstance(target.get("inputs"), list) else []
            if 0 <= link.target_slot < len(slots) and isinstance(slots[link.target_slot], dict) \
                    and slots[link.target_slot].get("widget"):
                return True
        return False

    @staticmethod
    def _subgraph_output_link(sub: _Graph, slot: int) -> Any:
        for link_id, link in sub.links.items():
            if link.target_id == SUBGRAPH_OUTPUT_NODE and link.target_slot == slot:
                return link_id
        return None

    @staticmethod
    def _bypass_input(node: dict, link: _Link) -> Any:
        """The input a bypassed node passes through: same type as the output, preferring the same slot."""
        candidates = [e for e in _slots(node) if e.get("link") is not None]
        want = str(link.type)
        same_type = [e for e in candidates if _text(e.get("type")) == want or want == "*" or e.get("type") == "*"]
        if not same_type:
            return None
        inputs = node.get("inputs") if isinstance(node.get("inputs"), list) else []
        if 0 <= link.origin_slot < len(inputs) and inputs[link.origin_slot] in same_type:
            return _norm_id(inputs[link.origin_slot]["link"])
        return _norm_id(same_type[0]["link"])

    def _warn(self, node_id: str, class_type: str, message: str) -> None:
        self.warnings.append(WorkflowError(type="conversion_warning", node_id=node_id, class_type=class_type,
                                           message=message))


def ui_to_api(workflow: dict, registry: NodeRegistry) -> tuple[dict[str, dict[str, Any]], list[WorkflowError]]:
    """Convert a UI workflow; returns the API prompt and the conversion warnings."""
    converter = UIConverter(workflow, registry)
    return converter.convert(), converter.warnings
