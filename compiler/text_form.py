"""The compact text form: a Python-like script that LLMs write well, compiled to API JSON and back.

    ckpt = CheckpointLoaderSimple(ckpt_name="v1-5-pruned-emaonly.safetensors")
    pos = CLIPTextEncode(text="a red fox", clip=ckpt.CLIP)  # Positive prompt
    n3 = KSampler(model=ckpt.MODEL, positive=pos.CONDITIONING, latent_image=n5[0], seed=7)

Rules, all valid Python syntax so it parses with `ast`:
- one assignment per node; the target is the node id. `n12` stands for id "12" and `n12_3` for the
  subgraph id "12:3"; other identifiers are ids as written; any other id is written `node["any id"]`.
- the call names the class; a class name that is no identifier is written `Node["Image Resize (KJ)"](...)`.
- keyword arguments are inputs: literals (strings, numbers, True/False/None, lists, dicts; JSON's
  true/false/null too) or links `src.OUTPUT_NAME` / `src[slot]` (a bare `src` means its only output).
- a comment at the end of a node's line is its title (`_meta.title`); other comments are ignored.

`format_text(parse_text(t))` reproduces any text `format_text` wrote, and `parse_text(format_text(w)) == w`.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import math
import re
import tokenize
from typing import Any

from compiler.errors import WorkflowError, WorkflowFormatError
from nodes.registry import NodeRegistry

_NUMERIC_ID = re.compile(r"^n(\d+(?:_\d+)*)$")
_DIGIT_PATH = re.compile(r"^\d+(?::\d+)*$")
_RESERVED = {"node", "Node", "true", "false", "null", "True", "False", "None", "Infinity", "NaN"}
MAX_NESTING = 100
"""Lists and dicts in a value nest at most this deep, both ways (Python's parser stops near 200 anyway)."""
_LITERAL_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None,
                  "Infinity": math.inf, "NaN": math.nan}


def _syntax_error(message: str, line: int | None = None, col: int | None = None, **extra: Any) -> WorkflowFormatError:
    where = f"line {line}: " if line else ""
    return WorkflowFormatError([WorkflowError(
        type="text_form_syntax", message=f"{where}{message}", details=message,
        extra_info={"line": line, "column": col, **extra})])


# ---- ids ------------------------------------------------------------------------------------------------
def id_to_name(node_id: str) -> str:
    """How an id is written as an assignment target or link source."""
    if _DIGIT_PATH.match(node_id):
        return "n" + node_id.replace(":", "_")
    if node_id.isidentifier() and not keyword.iskeyword(node_id) and node_id not in _RESERVED \
            and not _NUMERIC_ID.match(node_id):
        return node_id
    return f"node[{json.dumps(node_id, ensure_ascii=False)}]"


def _name_to_id(name: str) -> str:
    match = _NUMERIC_ID.match(name)
    return match.group(1).replace("_", ":") if match else name


def _node_ref(expr: ast.expr) -> str | None:
    """The node id an expression names (`n4`, `ckpt`, `node["x"]`), or None."""
    if isinstance(expr, ast.Name) and expr.id not in _LITERAL_NAMES:
        return _name_to_id(expr.id)
    if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name) and expr.value.id == "node" \
            and isinstance(expr.slice, ast.Constant) and isinstance(expr.slice.value, str):
        return expr.slice.value
    return None


# ---- printing ------------------------------------------------------------------------------------------
def _literal(value: Any, depth: int = 0) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple | dict) and depth >= MAX_NESTING:
        raise WorkflowFormatError([WorkflowError(
            type="invalid_workflow_format", message=f"a value is nested more than {MAX_NESTING} levels deep, "
                                                    "too deep for the text form; use API JSON")])
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_literal(v, depth + 1)}"
                               for k, v in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _output_names(class_type: str, registry: NodeRegistry | None) -> list[str] | None:
    if registry is None or class_type not in registry:
        return None
    try:
        return [o.name for o in registry.spec(class_type).outputs]
    except Exception:
        return None


def _is_link(value: Any, prompt: dict) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool) and value[0] in prompt)


def format_text(prompt: dict[str, Any], registry: NodeRegistry | None = None) -> str:
    """API-format workflow → text form (statements in the workflow's own order)."""
    names_cache: dict[str, list[str] | None] = {}
    lines = []
    for node_id, node in prompt.items():
        class_type = str(node.get("class_type", ""))
        call = class_type if class_type.isidentifier() and not keyword.iskeyword(class_type) \
            and class_type not in _RESERVED else f"Node[{json.dumps(class_type, ensure_ascii=False)}]"
        args = []
        for name, value in (node.get("inputs") or {}).items():
            if not name.isidentifier() or keyword.iskeyword(name):
                raise WorkflowFormatError([WorkflowError(
                    type="invalid_workflow_format", node_id=str(node_id), input_name=name,
                    message=f"input name {name!r} cannot be written in the text form; use API JSON")])
            if _is_link(value, prompt):
                src_id, slot = value
                src_class = str(prompt[src_id].get("class_type", ""))
                if src_class not in names_cache:
                    names_cache[src_class] = _output_names(src_class, registry)
                out_names = names_cache[src_class]
                ref = id_to_name(src_id)
                if out_names and slot < len(out_names) and out_names[slot].isidentifier() \
                        and out_names.count(out_names[slot]) == 1 and not keyword.iskeyword(out_names[slot]):
                    args.append(f"{name}={ref}.{out_names[slot]}")
                else:
                    args.append(f"{name}={ref}[{slot}]")
            else:
                args.append(f"{name}={_literal(value)}")
        meta = node.get("_meta")
        comment = ""
        if isinstance(meta, dict) and meta:
            title = meta.get("title")
            if set(meta) == {"title"} and isinstance(title, str) and title and "\n" not in title \
                    and "\r" not in title and title == title.strip():
                comment = f"  # {title}"
            else:
                args.append(f"_meta={_literal(meta)}")
        lines.append(f"{id_to_name(str(node_id))} = {call}({', '.join(args)}){comment}")
    return "\n".join(lines) + ("\n" if lines else "")


# ---- parsing -------------------------------------------------------------------------------------------
def _source(expr: ast.AST) -> str:
    """An expression written back for a message; a short stand-in when it is too deep to unparse."""
    try:
        text = ast.unparse(expr)
    except RecursionError:
        return "<an expression nested too deeply>"
    return text if len(text) <= 80 else text[:77] + "..."


def _literal_value(expr: ast.expr, depth: int = 0) -> Any:
    """A literal's value; lists and dicts at most MAX_NESTING deep, any run of signs folded in a loop."""
    if depth >= MAX_NESTING and isinstance(expr, ast.List | ast.Tuple | ast.Dict):
        raise _syntax_error(f"a value is nested more than {MAX_NESTING} levels deep", expr.lineno, expr.col_offset)
    sign, inner_expr = 1, expr
    while isinstance(inner_expr, ast.UnaryOp) and isinstance(inner_expr.op, ast.USub | ast.UAdd):
        sign = -sign if isinstance(inner_expr.op, ast.USub) else sign
        inner_expr = inner_expr.operand
    if inner_expr is not expr:
        if isinstance(inner_expr, ast.Constant | ast.Name):
            inner = _literal_value(inner_expr, depth)
            if isinstance(inner, int | float) and not isinstance(inner, bool):
                return -inner if sign < 0 else inner
        raise _unsupported(expr)
    if isinstance(expr, ast.Constant) and not isinstance(expr.value, bytes | complex) and expr.value is not Ellipsis:
        return expr.value
    if isinstance(expr, ast.Name) and expr.id in _LITERAL_NAMES:
        return _LITERAL_NAMES[expr.id]
    if isinstance(expr, ast.List | ast.Tuple):
        return [_literal_value(e, depth + 1) for e in expr.elts]
    if isinstance(expr, ast.Dict):
        out = {}
        for k, v in zip(expr.keys, expr.values, strict=True):
            key = _literal_value(k, depth + 1) if k is not None else None
            if not isinstance(key, str):
                raise _syntax_error("dictionary keys must be strings", expr.lineno, expr.col_offset)
            out[key] = _literal_value(v, depth + 1)
        return out
    raise _unsupported(expr)


def _unsupported(expr: ast.expr) -> WorkflowFormatError:
    return _syntax_error(f"unsupported value {_source(expr)!r}: use a literal or a link like src.OUTPUT",
                         expr.lineno, expr.col_offset)


def _comments_by_line(text: str) -> dict[int, str]:
    """Comments by line number; text that ast accepted tokenizes, and if not, the comments read so far count."""
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string[1:].strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return comments
    return comments


def parse_text(text: str, registry: NodeRegistry | None = None) -> dict[str, Any]:
    """Text form → API-format workflow; raises WorkflowFormatError with line numbers on bad input."""
    if not isinstance(text, str):
        raise _syntax_error("the text form must be a string")
    try:
        tree = ast.parse(text, mode="exec")
    except SyntaxError as exc:
        raise _syntax_error(f"not valid text form: {exc.msg}", exc.lineno, exc.offset) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise _syntax_error(f"not valid text form: {exc}") from None
    comments = _comments_by_line(text)
    prompt: dict[str, Any] = {}
    pending: list[tuple[str, str, ast.expr, str]] = []  # (node id, input, link expr, source id)
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # a docstring
        if not isinstance(stmt, ast.Assign) or len(stmt.targets) != 1:
            raise _syntax_error("each statement must be `name = NodeClass(input=value, ...)`",
                                stmt.lineno, stmt.col_offset)
        node_id = _node_ref(stmt.targets[0])
        if node_id is None:
            raise _syntax_error(f"cannot use {_source(stmt.targets[0])!r} as a node name",
                                stmt.lineno, stmt.col_offset)
        if node_id in prompt:
            raise _syntax_error(f"node {id_to_name(node_id)} is defined twice", stmt.lineno, stmt.col_offset)
        call = stmt.value
        if not isinstance(call, ast.Call):
            raise _syntax_error(f"the value of {id_to_name(node_id)} must be a node call like KSampler(...)",
                                stmt.lineno, stmt.col_offset)
        class_type = _class_name(call.func)
        if class_type is None:
            raise _syntax_error(f"{_source(call.func)!r} is not a node class name", stmt.lineno,
                                stmt.col_offset)
        if call.args:
            raise _syntax_error(f"{class_type}: inputs must be passed by name (input=value)",
                                stmt.lineno, stmt.col_offset)
        inputs: dict[str, Any] = {}
        meta = None
        for kw in call.keywords:
            if kw.arg is None:
                raise _syntax_error("**kwargs is not supported", stmt.lineno, stmt.col_offset)
            if kw.arg in inputs:
                raise _syntax_error(f"input {kw.arg!r} given twice", stmt.lineno, stmt.col_offset)
            if kw.arg == "_meta":
                meta = _literal_value(kw.value)
                continue
            source = _link_source(kw.value)
            if source is not None:
                inputs[kw.arg] = None  # keeps the input order; filled below
                pending.append((node_id, kw.arg, kw.value, source))
            else:
                inputs[kw.arg] = _literal_value(kw.value)
        entry: dict[str, Any] = {"inputs": inputs, "class_type": class_type}
        title = comments.get(getattr(stmt, "end_lineno", stmt.lineno) or stmt.lineno)
        if meta is not None:
            entry["_meta"] = meta
        elif title:
            entry["_meta"] = {"title": title}
        prompt[node_id] = entry
    for node_id, name, expr, source in pending:
        prompt[node_id]["inputs"][name] = _resolve_link(expr, source, prompt, registry)
    return prompt


def _class_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Subscript) and isinstance(func.value, ast.Name) and func.value.id == "Node" \
            and isinstance(func.slice, ast.Constant) and isinstance(func.slice.value, str):
        return func.slice.value
    if isinstance(func, ast.Attribute):  # tolerate dotted names from some packs (a loop: chains may be long)
        parts: list[str] = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        return ".".join([func.id, *reversed(parts)]) if isinstance(func, ast.Name) else None
    return None


def _link_source(expr: ast.expr) -> str | None:
    if isinstance(expr, ast.Attribute):
        return _node_ref(expr.value)
    if isinstance(expr, ast.Subscript) and isinstance(expr.slice, ast.Constant) \
            and isinstance(expr.slice.value, int) and not isinstance(expr.slice.value, bool):
        return _node_ref(expr.value)
    if isinstance(expr, ast.Name) and expr.id not in _LITERAL_NAMES:
        return _node_ref(expr)
    return None


def _resolve_link(expr: ast.expr, source: str, prompt: dict, registry: NodeRegistry | None) -> list:
    line, col = expr.lineno, expr.col_offset
    if isinstance(expr, ast.Subscript):
        return [source, int(expr.slice.value)]  # type: ignore[attr-defined]
    if source not in prompt:
        raise _syntax_error(f"{id_to_name(source)} is not defined; write {id_to_name(source)} = SomeNode(...) "
                            "or link by slot as src[0]", line, col, unknown_node=source)
    class_type = prompt[source]["class_type"]
    outputs = []
    if registry is not None and class_type in registry:
        outputs = registry.spec(class_type).outputs
    if isinstance(expr, ast.Name):
        if len(outputs) == 1:
            return [source, 0]
        if not outputs:
            return [source, 0] if registry is None or class_type not in registry else _no_outputs(source, line, col)
        names = ", ".join(o.name for o in outputs)
        raise _syntax_error(f"{id_to_name(source)} ({class_type}) has several outputs ({names}); "
                            f"pick one as {id_to_name(source)}.NAME", line, col)
    attr = expr.attr  # type: ignore[attr-defined]
    if not outputs:
        raise _syntax_error(f"cannot resolve output {attr!r} of {id_to_name(source)}: class {class_type!r} is "
                            f"unknown; link by slot as {id_to_name(source)}[0]", line, col)
    for matcher in (lambda o: o.name == attr, lambda o: o.name.lower() == attr.lower(),
                    lambda o: o.type.lower() == attr.lower()):
        found = [o.index for o in outputs if matcher(o)]
        if len(found) == 1:
            return [source, found[0]]
    names = ", ".join(o.name for o in outputs)
    raise _syntax_error(f"{class_type} has no output {attr!r}; its outputs are: {names}", line, col)


def _no_outputs(source: str, line: int, col: int) -> list:
    raise _syntax_error(f"{id_to_name(source)} has no outputs to link from", line, col)
