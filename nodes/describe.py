"""One node's full schema as compact text that an LLM (or a person) reads well."""

from __future__ import annotations

import json
from typing import Any

from nodes.spec import InputSpec, NodeSpec

MAX_CHOICES = 25


def _value(v: Any) -> str:
    """Python-style literal, as the compiler's text form writes values."""
    if isinstance(v, bool) or v is None:
        return repr(v)
    return json.dumps(v, ensure_ascii=False)


def _describe_input(spec: InputSpec) -> str:
    parts = [f"  {spec.name}: {spec.type}"]
    opts = spec.options
    if "default" in opts:
        parts.append(f"= {_value(opts['default'])}")
    if "min" in opts or "max" in opts:
        rng = f"[{opts.get('min', '')} .. {opts.get('max', '')}"
        if "step" in opts:
            rng += f", step {opts['step']}"
        parts.append(rng + "]")
    if spec.choices is not None:
        shown = ", ".join(_value(c) for c in spec.choices[:MAX_CHOICES])
        more = f", ... (+{len(spec.choices) - MAX_CHOICES} more)" if len(spec.choices) > MAX_CHOICES else ""
        parts.append(f"one of [{shown}{more}]" if spec.choices else "one of [] (no files installed)")
    if not spec.is_widget:
        parts.append("(link from another node)")
    flags = [f for f in ("multiline", "lazy", "forceInput") if opts.get(f)]
    if flags:
        parts.append("{" + ", ".join(flags) + "}")
    if opts.get("tooltip"):
        parts.append(f"— {opts['tooltip']}")
    return " ".join(parts)


def describe_spec(spec: NodeSpec) -> str:
    lines = [f"{spec.name} ({spec.display_name}) [category: {spec.category or '-'}]"
             + ("  OUTPUT NODE" if spec.output_node else "")
             + ("" if spec.executable else "  (catalog only: not executable here)")
             + ("  DEPRECATED" if spec.deprecated else "")]
    if spec.description:
        lines.append(spec.description.strip())
    for section in ("required", "optional"):
        items = [i for i in spec.inputs if i.section == section]
        if items:
            lines.append(f"{section} inputs:")
            lines.extend(_describe_input(i) for i in items)
    if spec.outputs:
        lines.append("outputs:")
        for out in spec.outputs:
            extra = " (list)" if out.is_list else ""
            lines.append(f"  [{out.index}] {out.name}: {out.type}{extra}")
    else:
        lines.append("outputs: none")
    args = []
    for i in spec.inputs:
        if i.section != "required":
            continue
        if i.is_widget:
            args.append(f"{i.name}={_value(i.options.get('default', i.choices[0] if i.choices else ''))}")
        else:
            args.append(f"{i.name}=<node>.{i.type.split(',')[0]}")
    lines.append(f"text form: n1 = {spec.name}({', '.join(args)})")
    return "\n".join(lines)
