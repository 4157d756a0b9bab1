"""What a node is: ComfyUI's class convention turned into typed specs and `/object_info` entries.

One path for everything: a node class is first described as its `/object_info` entry (exactly the keys and
shapes ComfyUI's server returns), and `NodeSpec.from_object_info` reads such an entry, whether it came from
a class here or from a foreign catalog file.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
ANY_TYPE = "*"
InputSection = Literal["required", "optional", "hidden"]


def json_safe(value: Any) -> Any:
    """Tuples become lists and anything JSON cannot hold becomes its string form (ComfyUI would crash)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):  # str subclasses such as the "AnyType" trick of custom packs
        return str(value)
    if isinstance(value, int):
        return int(value)
    return str(value)


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
