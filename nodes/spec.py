"""What a node is: ComfyUI's class convention turned into typed specs and `/object_info` entries.

One path for everything: a node class is first described as its `/object_info` entry (exactly the keys and
shapes ComfyUI's server returns), and `NodeSpec.from_object_info` reads such an entry, whether it came from
a class here or from a foreign catalog file.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
ANY_TYPE = "*"
InputSection = Literal["required", "optional", "hidden"]


MAX_JSON_DEPTH = 200
"""How deep `json_safe` copies nested lists and dicts; deeper parts become a marker string, so that
`json.dumps` (which recurses in C) and pydantic can always encode the result."""
SURROGATE = re.compile("[\ud800-\udfff]")
_CONTAINER_DONE = object()
_CONTAINERS = (dict, list, tuple)
_RECURSIVE_DEPTH = 32  # json_safe recurses this deep at most, then goes on with an explicit stack


def safe_text(text: str) -> str:
    """`text` with lone surrogates (JSON's "\\ud800" escapes) written as backslash escapes: UTF-8 cannot hold them."""
    if SURROGATE.search(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _scalar(value: Any) -> Any:
    """A JSON scalar for a value that is no list, tuple or dict."""
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is str:
        return safe_text(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):  # str subclasses such as the "AnyType" trick of custom packs
        return safe_text(str.__str__(value))
    if isinstance(value, int):
        return int(value)
    try:
        return safe_text(str(value))
    except Exception as exc:  # a foreign object whose __str__ fails still gets a readable stand-in
        return f"<{type(value).__name__}: str() failed: {type(exc).__name__}>"


def json_safe(value: Any, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A copy that strict JSON can hold: tuples become lists, keys strings, NaN/inf and other objects their
    string form, lone surrogates escapes (ComfyUI would crash on any of these).

    Nesting never raises RecursionError: the first levels are copied by a (fast) recursive walk, deeper
    ones by an iterative one; containers deeper than `max_depth` and circular references become marker
    strings. A container shared by several parents is converted once.
    """
    if not isinstance(value, _CONTAINERS):
        return _scalar(value)
    return _copy_recursive(value, 0, max_depth, set(), {})


def _copy_recursive(value: Any, depth: int, max_depth: int, open_ids: set[int], done: dict[int, Any]) -> Any:
    ident = id(value)
    if ident in open_ids:
        return "<circular reference>"
    if ident in done:
        return done[ident]
    if depth >= max_depth:
        return f"<nested deeper than {max_depth} levels>"
    if depth >= _RECURSIVE_DEPTH:
        return _copy_iterative(value, max_depth - depth, max_depth)
    open_ids.add(ident)
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    out: Any = {} if isinstance(value, dict) else [None] * len(value)
    is_dict = isinstance(value, dict)
    for key, item in pairs:
        if is_dict:
            key = _key_text(key)
        kind = type(item)
        if kind is str:
            out[key] = item if SURROGATE.search(item) is None else safe_text(item)
        elif item is None or kind is int or kind is bool:
            out[key] = item
        elif isinstance(item, _CONTAINERS):
            out[key] = _copy_recursive(item, depth + 1, max_depth, open_ids, done)
        else:
            out[key] = _scalar(item)
    open_ids.discard(ident)
    done[ident] = out
    return out


def _copy_iterative(value: Any, max_depth: int, shown_depth: int) -> Any:
    """json_safe's walk for deep structures: an explicit stack instead of the call stack.

    `max_depth` counts from `value`; `shown_depth` is the limit counted from the top, for the marker."""
    holder: list[Any] = [None]
    done: dict[int, Any] = {}      # id of a converted container -> its copy (shared references)
    open_ids: set[int] = set()     # containers being converted now: meeting one again is a cycle
    stack: list[tuple[Any, Any, Any, int]] = [(holder, 0, value, 0)]
    while stack:
        target, key, item, depth = stack.pop()
        if target is _CONTAINER_DONE:
            open_ids.discard(key)
            continue
        if not isinstance(item, _CONTAINERS):
            target[key] = _scalar(item)
            continue
        ident = id(item)
        if ident in open_ids:
            target[key] = "<circular reference>"
            continue
        if ident in done:
            target[key] = done[ident]
            continue
        if depth >= max_depth:
            target[key] = f"<nested deeper than {shown_depth} levels>"
            continue
        open_ids.add(ident)
        stack.append((_CONTAINER_DONE, ident, None, depth))
        if isinstance(item, dict):
            copy_d: dict[str, Any] = {}
            children = [(copy_d, _key_text(k), v, depth + 1) for k, v in item.items()]
            copy: Any = copy_d
        else:
            copy = [None] * len(item)
            children = [(copy, i, v, depth + 1) for i, v in enumerate(item)]
        target[key] = done[ident] = copy
        children.reverse()  # popped in order, so of two keys that read alike the later one wins
        stack.extend(children)
    return holder[0]


def _key_text(key: Any) -> str:
    return safe_text(key) if type(key) is str else str(_scalar(key))


def class_object_info(name: str, cls: type, display_name: str | None = None, module: str = "nodes") -> dict:
    """The `/object_info` entry of a node class, built the way ComfyUI's server builds it."""
    input_types = cls.INPUT_TYPES()
    if not isinstance(input_types, dict):
        raise TypeError(f"{name}.INPUT_TYPES() must return a dict, got {type(input_types).__name__}")
    return_types = tuple(getattr(cls, "RETURN_TYPES", ()))
    info: dict[str, Any] = {
        "input": json_safe(input_types),
        "input_order": {section: list(entries.keys()) for section, entries in input_types.items()
                        if isinstance(entries, dict)},
        "output": json_safe(return_types),
        "output_is_list": json_safe(getattr(cls, "OUTPUT_IS_LIST", [False] * len(return_types))),
        "output_name": json_safe(getattr(cls, "RETURN_NAMES", return_types)),
        "name": name,
        "display_name": display_name or name,
        "description": str(getattr(cls, "DESCRIPTION", "") or ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", module),
        "category": str(getattr(cls, "CATEGORY", "sd")),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = json_safe(cls.OUTPUT_TOOLTIPS)
    if getattr(cls, "DEPRECATED", False):
        info["deprecated"] = True
    if getattr(cls, "EXPERIMENTAL", False):
        info["experimental"] = True
    if hasattr(cls, "API_NODE"):
        info["api_node"] = bool(cls.API_NODE)
    return info


class InputSpec(BaseModel):
    """One input of a node: its socket type, where it sits, and the widget options ComfyUI understands."""

    name: str
    section: InputSection
    type: str
    choices: list[Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def required(self) -> bool:
        return self.section == "required"

    @property
    def is_widget(self) -> bool:
        """True when the UI shows a widget (its value sits in widgets_values) rather than only a socket."""
        return self.section != "hidden" and self.type in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def lazy(self) -> bool:
        return bool(self.options.get("lazy"))

    @property
    def has_control_widget(self) -> bool:
        """ComfyUI's frontend adds a 'control after generate' widget value after seeds."""
        if self.options.get("control_after_generate"):
            return True
        return self.type == "INT" and self.name in ("seed", "noise_seed")

    @property
    def types(self) -> frozenset[str]:
        """A socket type may be a comma-separated union ("IMAGE,MASK")."""
        return frozenset(t.strip() for t in self.type.split(","))


class OutputSpec(BaseModel):
    index: int
    name: str
    type: str
    is_list: bool = False
    tooltip: str | None = None


class NodeSpec(BaseModel):
    """A node class as the compiler, the agent and the catalog see it."""

    name: str
    display_name: str
    category: str = ""
    description: str = ""
    python_module: str = "nodes"
    output_node: bool = False
    deprecated: bool = False
    experimental: bool = False
    api_node: bool = False
    inputs: list[InputSpec] = Field(default_factory=list)
    outputs: list[OutputSpec] = Field(default_factory=list)
    executable: bool = True
    pack: str = ""

    def input(self, name: str) -> InputSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    @property
    def widget_inputs(self) -> list[InputSpec]:
        return [i for i in self.inputs if i.is_widget]

    @classmethod
    def from_object_info(cls, entry: dict[str, Any], *, executable: bool = True, pack: str = "") -> NodeSpec:
        """Read one `/object_info` entry (V1 list-style combos and V3 "COMBO" + options both accepted)."""
        if not isinstance(entry, dict):
            raise ValueError("an object_info entry must be an object")
        raw_inputs = entry.get("input") or {}
        if not isinstance(raw_inputs, dict):
            raise ValueError("'input' must be an object")
        order = entry.get("input_order") or {}
        inputs: list[InputSpec] = []
        for section in ("required", "optional", "hidden"):
            entries = raw_inputs.get(section) or {}
            if not isinstance(entries, dict):
                raise ValueError(f"input section {section!r} must be an object")
            names = [n for n in order.get(section, []) if n in entries] if isinstance(order, dict) else []
            names += [n for n in entries if n not in names]
            for name in names:
                inputs.append(_parse_input(name, section, entries[name]))
        out_types = list(entry.get("output") or [])
        out_names = list(entry.get("output_name") or out_types)
        out_lists = list(entry.get("output_is_list") or [])
        tooltips = list(entry.get("output_tooltips") or [])
        outputs = []
        for i, raw_type in enumerate(out_types):
            otype = "COMBO" if isinstance(raw_type, list) else str(raw_type)
            outputs.append(OutputSpec(
                index=i,
                name=str(out_names[i]) if i < len(out_names) and out_names[i] is not None else otype,
                type=otype,
                is_list=bool(out_lists[i]) if i < len(out_lists) else False,
                tooltip=tooltips[i] if i < len(tooltips) and isinstance(tooltips[i], str) else None,
            ))
        name = str(entry.get("name") or "")
        return cls(
            name=name,
            display_name=str(entry.get("display_name") or name),
            category=str(entry.get("category") or ""),
            description=str(entry.get("description") or ""),
            python_module=str(entry.get("python_module") or "nodes"),
            output_node=bool(entry.get("output_node")),
            deprecated=bool(entry.get("deprecated")),
            experimental=bool(entry.get("experimental")),
            api_node=bool(entry.get("api_node")),
            inputs=inputs,
            outputs=outputs,
            executable=executable,
            pack=pack,
        )


def _parse_input(name: str, section: str, raw: Any) -> InputSpec:
    if section == "hidden":
        hidden = raw[0] if isinstance(raw, list | tuple) and raw else raw
        return InputSpec(name=name, section="hidden", type=str(hidden))
    if isinstance(raw, str):  # tolerate a bare type name
        raw = [raw]
    if not isinstance(raw, list | tuple) or not raw:
        raise ValueError(f"input {name!r} must be a [type, options] list")
    head = raw[0]
    options = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
    choices = None
    if isinstance(head, list | tuple):
        choices, itype = list(head), "COMBO"
    else:
        itype = str(head)
        if itype == "COMBO":
            opts = options.get("options")
            choices = list(opts) if isinstance(opts, list | tuple) else []
    return InputSpec(name=name, section=section, type=itype, choices=choices, options=dict(options))
