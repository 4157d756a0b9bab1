"""API format → ComfyUI's UI ("workflow", version 0.4) format, with an automatic left-to-right layout.

The inverse of `compiler.ui_format`: the result converts back to the same API prompt through `ui_to_api`, so a
planned workflow opens on ComfyUI's canvas and queues unchanged. Widget values follow the registry's widget order
(required then optional inputs, as the frontend builds them) with a "fixed" control value after seeds; linked
widget inputs get an input slot naming the widget; a literal on an input that has no widget (a forceInput INT,
an input the registry does not declare) travels through a PrimitiveNode, which the UI → API path resolves back
to the literal. Classes the registry does not know keep their values in `widgets_values_named`.

The layout is a small Sugiyama pass: columns by longest path from the sources (a source sits just before its
first consumer), nodes within a column ordered by barycenter sweeps over the links (long links routed through
virtual nodes so they count too), boxes sized from their slots and widgets and stacked without overlapping.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from compiler.errors import WorkflowError, WorkflowFormatError
from nodes.registry import NodeRegistry
from nodes.spec import InputSpec, NodeSpec

UI_VERSION = 0.4
CONTROL_FIXED = "fixed"
"""Control-after-generate value written after seeds: "fixed" keeps the planned seed when the user queues."""
TITLE_H, SLOT_H, WIDGET_H = 30, 20, 24
MIN_W, MAX_W, MULTILINE_W, MULTILINE_H = 220, 420, 400, 100
PREVIEW_H = 250
"""Room for the image a preview/save/load node shows on the canvas."""
PREVIEW_CLASSES = frozenset({"SaveImage", "PreviewImage", "LoadImage", "LoadImageMask", "SaveAnimatedWEBP",
                             "SaveAnimatedPNG", "SaveVideo", "SaveWEBM", "LoadImageOutput"})
COLUMN_GAP, ROW_GAP, ORIGIN = 100, 40, (40.0, 40.0)
SWEEPS = 4


@dataclass
class UINode:
    """One node being built; `box` is [x, y, w, h] once laid out."""

    id: int
    type: str
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    widgets_values: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    api_order: int = 0
    size: tuple[float, float] = (MIN_W, 60.0)
    pos: tuple[float, float] = (0.0, 0.0)

    def to_json(self, order: int) -> dict[str, Any]:
        node: dict[str, Any] = {"id": self.id, "type": self.type, "pos": [self.pos[0], self.pos[1]],
                                "size": [self.size[0], self.size[1]], "flags": {}, "order": order, "mode": 0,
                                "inputs": self.inputs, "outputs": self.outputs,
                                "properties": self.properties or {"Node name for S&R": self.type},
                                "widgets_values": self.widgets_values}
        if self.title is not None:
            node["title"] = self.title
        node.update(self.extra)
        return node


def _format_error(message: str, node_id: str | None = None) -> WorkflowFormatError:
    return WorkflowFormatError([WorkflowError(type="invalid_workflow_format", message=message, node_id=node_id)])


def _check_prompt(api: Any) -> dict[str, dict[str, Any]]:
    """The prompt's nodes, or a format error naming the first node that is not `{class_type, inputs}`."""
    if not isinstance(api, dict):
        raise _format_error(f"an API workflow must be a JSON object of nodes, got {type(api).__name__}")
    for node_id, node in api.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or not node["class_type"]:
            raise _format_error(f"node {node_id!r} has no class_type", node_id=str(node_id))
        if not isinstance(node.get("inputs", {}), dict):
            raise _format_error(f"node {node_id!r}: 'inputs' must be an object", node_id=str(node_id))
    return api


def _is_link(value: Any, api: dict) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] in api
            and type(value[1]) is int and value[1] >= 0)


def _ui_ids(api: dict) -> dict[str, int]:
    """UI ids: an API id that is a plain number keeps it (so the round trip gives the same ids); others
    ("12:5" from a flattened subgraph, names) get fresh numbers after the largest."""
    ids: dict[str, int] = {}
    for api_id in api:
        if api_id.isdigit() and api_id == str(int(api_id)) and int(api_id) < 2 ** 31:
            ids[api_id] = int(api_id)
    next_id = max(ids.values(), default=0) + 1
    for api_id in api:
        if api_id not in ids:
            ids[api_id] = next_id
            next_id += 1
    return ids


def _placeholder(spec: InputSpec) -> Any:
    """The value a widget shows when the prompt gives it none (it is linked, or left to its default)."""
    if "default" in spec.options:
        return spec.options["default"]
    if spec.type == "COMBO":
        return spec.choices[0] if spec.choices else ""
    return {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False}.get(spec.type, "")


class _Builder:
    """Builds UI nodes and links from a checked prompt; `warnings` lists what the UI form cannot hold."""

    def __init__(self, api: dict[str, dict[str, Any]], registry: NodeRegistry):
        self.api = api
        self.registry = registry
        self.ids = _ui_ids(api)
        self.next_id = max(self.ids.values(), default=0) + 1
        self.nodes: dict[int, UINode] = {}
        self.links: list[list[Any]] = []
        self.specs: dict[str, NodeSpec | None] = {}

    def spec(self, class_type: str) -> NodeSpec | None:
        if class_type not in self.specs:
            try:
                self.specs[class_type] = self.registry.spec(class_type) if class_type in self.registry else None
            except (LookupError, ValueError, TypeError):  # a class whose INPUT_TYPES is broken: treat as unknown
                self.specs[class_type] = None
        return self.specs[class_type]

    def build(self) -> None:
        for order, (api_id, node) in enumerate(self.api.items()):
            self.nodes[self.ids[api_id]] = self._node(api_id, node, order)
        for api_id, node in self.api.items():
            self._connect(self.nodes[self.ids[api_id]], node)

    # ---- one node's slots and widget values -------------------------------------------------------
    def _node(self, api_id: str, node: dict[str, Any], order: int) -> UINode:
        class_type = node["class_type"]
        spec = self.spec(class_type)
        inputs = node.get("inputs") or {}
        ui = UINode(id=self.ids[api_id], type=class_type, api_order=order)
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        if isinstance(title, str) and title and title != (spec.display_name if spec else class_type):
            ui.title = title
        if spec is None:
            literals = {k: v for k, v in inputs.items() if not _is_link(v, self.api)}
            ui.widgets_values = list(literals.values())
            ui.extra["widgets_values_named"] = literals
            ui.outputs = self._unknown_outputs(api_id)
        else:
            ui.widgets_values = self._widget_values(spec, inputs)
            ui.outputs = [{"name": o.name, "type": o.type, "links": [], "slot_index": o.index}
                          for o in spec.outputs]
            ui.outputs += [{"name": "*", "type": "*", "links": [], "slot_index": i}
                           for i in range(len(ui.outputs), len(self._unknown_outputs(api_id)))]
        if api_id != str(ui.id):  # the API id it had, for whoever maps results back
            ui.properties = {"Node name for S&R": class_type, "api_id": api_id}
        return ui

    def _widget_values(self, spec: NodeSpec, inputs: dict[str, Any]) -> list[Any]:
        """widgets_values in the frontend's order, cut after the last widget the prompt gives a literal."""
        values: list[Any] = []
        keep = 0
        for widget in spec.widget_inputs:
            given = widget.name in inputs and not _is_link(inputs[widget.name], self.api)
            values.append(inputs[widget.name] if given else _placeholder(widget))
            if widget.has_control_widget:
                values.append(CONTROL_FIXED)
            if given:
                keep = len(values)
        return values[:keep]

    def _unknown_outputs(self, api_id: str) -> list[dict]:
        """Outputs of a class without a spec: as many as the prompt's links use, typed "*"."""
        used = [v[1] for node in self.api.values() for v in (node.get("inputs") or {}).values()
                if _is_link(v, self.api) and v[0] == api_id]
        return [{"name": "*", "type": "*", "links": [], "slot_index": i} for i in range(max(used, default=-1) + 1)]

    # ---- links ------------------------------------------------------------------------------------
    def _connect(self, ui: UINode, node: dict[str, Any]) -> None:
        """Input slots and links: sockets in spec order, then linked widgets, then inputs the spec lacks."""
        spec = self.spec(node["class_type"])
        inputs = node.get("inputs") or {}
        declared = [i for i in spec.inputs if i.section != "hidden"] if spec else []
        sockets = [i for i in declared if not i.is_widget]
        widgets = [i for i in declared if i.is_widget]
        for socket in sockets:
            self._slot(ui, socket.name, socket.type, inputs, widget=False)
        for widget in widgets:
            if _is_link(inputs.get(widget.name), self.api):
                self._slot(ui, widget.name, widget.type, inputs, widget=True)
        known = {i.name for i in declared}
        for name, value in inputs.items():
            if name in known:
                continue
            if spec is None and not _is_link(value, self.api):
                continue  # carried by widgets_values_named
            self._slot(ui, name, "*", inputs, widget=False)

    def _slot(self, ui: UINode, name: str, slot_type: str, inputs: dict[str, Any], *, widget: bool) -> None:
        """One input slot, linked to its source, or to a PrimitiveNode holding its literal."""
        slot: dict[str, Any] = {"name": name, "type": slot_type, "link": None}
        if widget:
            slot["widget"] = {"name": name}
        ui.inputs.append(slot)
        if name not in inputs:
            return
        value = inputs[name]
        if _is_link(value, self.api):
            source = self.nodes[self.ids[value[0]]]
            self._link(source, value[1], ui, len(ui.inputs) - 1)
        else:
            self._link(self._primitive(name, slot_type, value), 0, ui, len(ui.inputs) - 1)

    def _primitive(self, name: str, slot_type: str, value: Any) -> UINode:
        """A PrimitiveNode holding a literal for an input that has no widget to hold it."""
        node = UINode(id=self.next_id, type="PrimitiveNode", title=name, api_order=-1, widgets_values=[value])
        node.outputs = [{"name": "connect to widget input", "type": slot_type, "links": [], "slot_index": 0,
                         "widget": {"name": name}}]
        node.properties = {"Run widget replace on values": False}
        self.nodes[node.id] = node
        self.next_id += 1
        return node

    def _link(self, source: UINode, slot: int, target: UINode, target_slot: int) -> None:
        while len(source.outputs) <= slot:
            source.outputs.append({"name": "*", "type": "*", "links": [], "slot_index": len(source.outputs)})
        link_type = source.outputs[slot]["type"]
        self.links.append([0, source.id, slot, target.id, target_slot, link_type])


# ---- sizes ------------------------------------------------------------------------------------------------
def _text_width(chars: int) -> float:
    return chars * 7.0 + 60.0


def _size(ui: UINode, spec: NodeSpec | None) -> tuple[float, float]:
    """A box that fits the title, the slot rows and the widgets, as ComfyUI's default node drawing needs."""
    if ui.type == "PrimitiveNode":
        widgets, multiline = [(ui.title or "", ui.widgets_values[0])], False
    elif spec is None:
        widgets, multiline = list(ui.extra.get("widgets_values_named", {}).items()), False
    else:
        names = [w.name for w in spec.widget_inputs]
        named = dict(zip(names, _without_controls(spec, ui.widgets_values), strict=False))
        widgets = [(w.name, named.get(w.name, "")) for w in spec.widget_inputs]
        widgets += [("control_after_generate", CONTROL_FIXED) for w in spec.widget_inputs if w.has_control_widget]
        multiline = any(w.type == "STRING" and w.options.get("multiline") for w in spec.widget_inputs)
    longest_in = max((len(str(s["name"])) for s in ui.inputs), default=0)
    longest_out = max((len(str(s["name"])) for s in ui.outputs), default=0)
    labels = max((len(name) + min(len(str(value)), 24) for name, value in widgets), default=0)
    title = len(ui.title or (spec.display_name if spec else ui.type))
    width = max(_text_width(max(labels, longest_in + longest_out + 4)), title * 8.0 + 60.0, MIN_W)
    width = MULTILINE_W if multiline else min(width, MAX_W)
    rows = max(len(ui.inputs), len(ui.outputs))
    height = TITLE_H + rows * SLOT_H + len(widgets) * WIDGET_H + 10
    if multiline:
        height += MULTILINE_H
    if ui.type in PREVIEW_CLASSES:
        height += PREVIEW_H
    return float(round(width)), float(round(height))


def _without_controls(spec: NodeSpec, values: list[Any]) -> list[Any]:
    """Widget values with the control-after-generate entries taken out (one per widget)."""
    out, i = [], 0
    for widget in spec.widget_inputs:
        if i >= len(values):
            break
        out.append(values[i])
        i += 2 if widget.has_control_widget else 1
    return out


# ---- layout -----------------------------------------------------------------------------------------------
def _layers(order: list[int], succ: dict[int, list[int]], pred: dict[int, list[int]]) -> dict[int, int]:
    """Columns by longest path from the sources (Kahn's order); a source then moves right to sit just
    before its first consumer. Nodes on a cycle (not a valid prompt, still drawn) follow their placed inputs."""
    indegree = {n: len(pred[n]) for n in order}
    ready = [n for n in order if indegree[n] == 0]
    layer: dict[int, int] = {}
    while ready:
        node = ready.pop(0)
        layer[node] = max((layer[p] + 1 for p in pred[node] if p in layer), default=0)
        for nxt in succ[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    for node in order:
        if node not in layer:
            layer[node] = max((layer[p] + 1 for p in pred[node] if p in layer), default=0)
    for node in order:
        if not pred[node] and succ[node]:
            layer[node] = max(layer[node], min(layer[s] for s in succ[node]) - 1)
    return layer


def _crossings(upper: list, lower: list, down: dict) -> int:
    """Link crossings between two adjacent columns (inversions of the lower ends, upper ends sorted)."""
    rank = {n: i for i, n in enumerate(lower)}
    ends = sorted((i, rank[m]) for i, n in enumerate(upper) for m in down[n] if m in rank)
    seen: list[int] = []
    total = 0
    for _, end in ends:
        at = bisect.bisect_right(seen, end)
        total += len(seen) - at
        seen.insert(at, end)
    return total


def _with_virtual(layer: dict[int, int], order: list[int], succ: dict[int, list[int]]):
    """Columns holding nodes and, for links that skip columns, virtual nodes (tuples) on the way."""
    columns: list[list[Any]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    down: dict[Any, list[Any]] = {n: [] for n in order}
    up: dict[Any, list[Any]] = {n: [] for n in order}
    for node in order:
        columns[layer[node]].append(node)
    for node in order:
        for target in succ[node]:
            if layer[target] <= layer[node]:
                continue  # a link back along a cycle takes no part in ordering
            previous = node
            for step in range(layer[node] + 1, layer[target]):
                virtual = ("v", node, target, step)
                columns[step].append(virtual)
                down[virtual], up[virtual] = [], []
                down[previous].append(virtual)
                up[virtual].append(previous)
                previous = virtual
            down[previous].append(target)
            up[target].append(previous)
    return columns, up, down


def _order_columns(columns: list[list[Any]], up: dict, down: dict) -> list[list[Any]]:
    """Barycenter sweeps (down, then up), keeping the ordering with the fewest crossings."""
    def total(cols: list[list[Any]]) -> int:
        return sum(_crossings(cols[i], cols[i + 1], down) for i in range(len(cols) - 1))

    best, best_crossings = [list(c) for c in columns], total(columns)
    current = [list(c) for c in columns]
    for _ in range(SWEEPS):
        if best_crossings == 0:
            break
        for i in range(1, len(current)):
            _sort_by_barycenter(current[i], current[i - 1], up)
        for i in range(len(current) - 2, -1, -1):
            _sort_by_barycenter(current[i], current[i + 1], down)
        crossings = total(current)
        if crossings < best_crossings:
            best, best_crossings = [list(c) for c in current], crossings
    return best


def _sort_by_barycenter(column: list[Any], fixed: list[Any], neighbours: dict) -> None:
    rank = {n: i for i, n in enumerate(fixed)}
    keys = {}
    for i, node in enumerate(column):
        ranks = [rank[m] for m in neighbours[node] if m in rank]
        keys[node] = sum(ranks) / len(ranks) if ranks else float(i)
    column.sort(key=lambda n: keys[n])


def _place(columns: list[list[Any]], nodes: dict[int, UINode], pred: dict[int, list[int]]) -> None:
    """x by column; y stacked in column order, each node pulled level with its inputs when there is room."""
    x = ORIGIN[0]
    for column in columns:
        real = [nodes[n] for n in column if isinstance(n, int)]
        cursor = ORIGIN[1]
        for ui in real:
            centers = [nodes[p].pos[1] + nodes[p].size[1] / 2 for p in pred[ui.id] if nodes[p].pos[0] < x]
            wanted = sum(centers) / len(centers) - ui.size[1] / 2 if centers else cursor
            ui.pos = (x, float(round(max(cursor, wanted))))
            cursor = ui.pos[1] + ui.size[1] + ROW_GAP
        x += max((ui.size[0] for ui in real), default=0.0) + COLUMN_GAP


def _layout(nodes: dict[int, UINode], links: list[list[Any]]) -> dict[int, int]:
    """Positions every node; returns each node's column."""
    order = sorted(nodes, key=lambda n: (nodes[n].api_order < 0, nodes[n].api_order, n))
    succ: dict[int, list[int]] = {n: [] for n in order}
    pred: dict[int, list[int]] = {n: [] for n in order}
    for _, source, _, target, _, _ in links:
        if source != target and target not in succ[source]:
            succ[source].append(target)
            pred[target].append(source)
    layer = _layers(order, succ, pred)
    columns, up, down = _with_virtual(layer, order, succ)
    _place(_order_columns(columns, up, down), nodes, pred)
    return layer


# ---- assembly ---------------------------------------------------------------------------------------------
def _number_links(nodes: dict[int, UINode], links: list[list[Any]]) -> list[list[Any]]:
    """Link ids in reading order (by target position, then slot), written into the slots they join."""
    ordered = sorted(links, key=lambda link: (nodes[link[3]].pos, link[4], nodes[link[1]].pos, link[2]))
    for link_id, link in enumerate(ordered, start=1):
        link[0] = link_id
        nodes[link[3]].inputs[link[4]]["link"] = link_id
        nodes[link[1]].outputs[link[2]]["links"].append(link_id)
    return ordered


def to_ui_workflow(api: dict, registry: NodeRegistry) -> dict[str, Any]:
    """An API prompt as a laid-out ComfyUI UI workflow that converts back to the same prompt.

    Raises WorkflowFormatError when `api` is not an API prompt (a dict of `{class_type, inputs}` nodes)."""
    builder = _Builder(_check_prompt(api), registry)
    builder.build()
    nodes = builder.nodes
    for ui in nodes.values():
        ui.size = _size(ui, builder.spec(ui.type) if ui.type != "PrimitiveNode" else None)
    layer = _layout(nodes, builder.links)
    links = _number_links(nodes, builder.links)
    placed = sorted(nodes.values(), key=lambda ui: (layer[ui.id], ui.pos[1], ui.id))
    return {
        "last_node_id": max(nodes, default=0),
        "last_link_id": len(links),
        "nodes": [ui.to_json(order) for order, ui in enumerate(placed)],
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1.0, "offset": [0.0, 0.0]}},
        "version": UI_VERSION,
    }
