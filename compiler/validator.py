"""Validation of API-format workflows against the registry: every problem at once, no recursion.

The walk is iterative (explicit stacks and Kahn's algorithm), so chains of any depth validate; per node
the work is a handful of dict lookups against a check table compiled once per class per call.
"""

from __future__ import annotations

import gc
import inspect
import math
import traceback
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from compiler.errors import WorkflowError
from compiler.plan import Plan
from nodes.registry import NodeRegistry
from nodes.spec import ANY_TYPE, WIDGET_TYPES, NodeSpec

_NO_DEFAULT = object()
_TRUE_STRINGS = {"true", "1", "yes", "on"}
_FALSE_STRINGS = {"false", "0", "no", "off", ""}


class ValidationResult(BaseModel):
    """The verdict on a workflow; `plan` is set when there is no error."""

    valid: bool
    errors: list[WorkflowError] = Field(default_factory=list)
    warnings: list[WorkflowError] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    good_outputs: list[str] = Field(default_factory=list)
    plan: Plan | None = None

    def node_errors(self) -> dict[str, dict[str, Any]]:
        """ComfyUI's `node_errors` shape: {node_id: {errors, dependent_outputs, class_type}}."""
        result: dict[str, dict[str, Any]] = {}
        for err in self.errors:
            if err.node_id is None:
                continue
            entry = result.setdefault(err.node_id, {"errors": [], "dependent_outputs": [],
                                                    "class_type": err.class_type})
            entry["errors"].append(err.to_comfy())
        bad_outputs = [o for o in self.outputs if o not in set(self.good_outputs)]
        for entry in result.values():
            entry["dependent_outputs"] = bad_outputs
        return result

    def comfy_error(self) -> dict[str, Any] | None:
        """ComfyUI's top-level `error` for POST /prompt, or None when valid."""
        if self.valid:
            return None
        global_errors = [e for e in self.errors if e.node_id is None]
        if global_errors:
            return global_errors[0].to_comfy()
        details = "\n".join(f"{e.message}: {e.details}" for e in self.errors)
        return {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                "details": details, "extra_info": {}}

    def summary(self) -> str:
        if self.valid and self.plan is not None:
            return f"valid: {len(self.plan.order)} nodes to run for {len(self.outputs)} output(s)"
        return f"invalid: {len(self.errors)} error(s)"


@dataclass(slots=True)
class _InputCheck:
    name: str
    required: bool
    kind: str                 # INT, FLOAT, STRING, BOOLEAN, COMBO, * or a socket type
    types: frozenset[str]
    lo: Any = None
    hi: Any = None
    choices: Any = None       # set or list for COMBO
    choices_list: list | None = None
    config: list | None = None
    skip_range: bool = False  # VALIDATE_INPUTS takes this input: it validates it itself
    default: Any = None       # filled in when a required widget input is left out


@dataclass(slots=True)
class _ClassCheck:
    spec: NodeSpec
    inputs: list[_InputCheck]
    by_name: dict[str, _InputCheck]
    output_types: list[frozenset[str]]
    output_node: bool
    validate_fn: Any = None
    validate_args: list[str] = field(default_factory=list)
    validate_kwargs: bool = False
    input_is_list: bool = False


def _compile_class(spec: NodeSpec, cls: type | None) -> _ClassCheck:
    validate_fn = getattr(cls, "VALIDATE_INPUTS", None) if cls is not None else None
    validate_args: list[str] = []
    validate_kwargs = False
    if validate_fn is not None:
        try:
            argspec = inspect.getfullargspec(validate_fn)
            validate_args = [a for a in argspec.args if a not in ("self", "cls", "s")]
            validate_kwargs = argspec.varkw is not None
        except TypeError:
            validate_fn = None
    checks = []
    for ispec in spec.inputs:
        if ispec.section == "hidden":
            continue
        choices = None
        if ispec.choices is not None:
            try:
                choices = set(ispec.choices)
            except TypeError:
                choices = list(ispec.choices)
        checks.append(_InputCheck(
            name=ispec.name, required=ispec.required, kind=ispec.type, types=ispec.types,
            lo=ispec.options.get("min"), hi=ispec.options.get("max"), choices=choices,
            choices_list=ispec.choices, config=[ispec.choices if ispec.choices is not None else ispec.type,
                                                ispec.options],
            skip_range=ispec.name in validate_args or validate_kwargs,
            default=_widget_default(ispec),
        ))
    return _ClassCheck(
        spec=spec, inputs=checks, by_name={c.name: c for c in checks},
        output_types=[frozenset(t.strip() for t in o.type.split(",")) for o in spec.outputs],
        output_node=spec.output_node, validate_fn=validate_fn, validate_args=validate_args,
        validate_kwargs=validate_kwargs, input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
    )


def _widget_default(ispec: Any) -> Any:
    """The value ComfyUI's frontend would fill in for a widget left unset, or _NO_DEFAULT."""
    if not ispec.is_widget:
        return _NO_DEFAULT
    if "default" in ispec.options:
        return ispec.options["default"]
    if ispec.type == "COMBO" and ispec.choices:
        return ispec.choices[0]
    return _NO_DEFAULT


def types_compatible(received: frozenset[str], expected: frozenset[str]) -> bool:
    """ComfyUI's rule: '*' matches anything, and unions match when they share a type."""
    if ANY_TYPE in received or ANY_TYPE in expected:
        return True
    return not received.isdisjoint(expected)


def _convert(kind: str, value: Any) -> Any:
    """Convert a literal like ComfyUI does (int(), float(), str()), stricter where ComfyUI is surprising."""
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if kind == "INT":
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("not a finite number")
        if isinstance(value, str):
            value = value.strip()
            return int(float(value)) if any(c in value for c in ".eE") else int(value)
        if isinstance(value, list | dict) or value is None:
            raise ValueError(f"{type(value).__name__} is not a number")
        return int(value)
    if kind == "FLOAT":
        if isinstance(value, list | dict) or value is None:
            raise ValueError(f"{type(value).__name__} is not a number")
        result = float(value)
        if not math.isfinite(result):
            raise ValueError("not a finite number")
        return result
    if kind == "STRING":
        if isinstance(value, list | dict):
            raise ValueError(f"{type(value).__name__} is not text")
        return "" if value is None else str(value)
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE_STRINGS | _FALSE_STRINGS:
            return value.strip().lower() in _TRUE_STRINGS
        raise ValueError(f"{value!r} is not true or false")
    return value


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate(prompt: Any, registry: NodeRegistry, *, outputs: Iterable[str] | None = None) -> ValidationResult:
    """Validate an API-format workflow; report every problem, and compile a Plan when there is none.

    The cyclic garbage collector is paused meanwhile: validation makes no reference cycles, and on a
    100,000-node workflow the collector's passes over the new containers cost as much as the checks.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _validate(prompt, registry, outputs)
    finally:
        if was_enabled:
            gc.enable()


def _validate(prompt: Any, registry: NodeRegistry, outputs: Iterable[str] | None) -> ValidationResult:
    errors: list[WorkflowError] = []
    warnings: list[WorkflowError] = []
    if not isinstance(prompt, dict):
        errors.append(WorkflowError(
            type="invalid_prompt", message="A workflow must be a JSON object mapping node ids to nodes",
            details=f"got {type(prompt).__name__}"))
        return ValidationResult(valid=False, errors=errors)
    if not prompt:
        errors.append(WorkflowError(type="prompt_no_outputs", message="Prompt has no outputs",
                                    details="the workflow has no nodes"))
        return ValidationResult(valid=False, errors=errors)

    # 1. node shapes and classes -------------------------------------------------------------------------
    nodes: dict[str, tuple[str, dict]] = {}
    class_checks: dict[str, _ClassCheck | None] = {}
    node_error_ids: set[str] = set()

    def add(err: WorkflowError) -> None:
        errors.append(err)
        if err.node_id is not None:
            node_error_ids.add(err.node_id)

    for raw_id, node in prompt.items():
        node_id = str(raw_id)
        if not isinstance(node, dict):
            add(WorkflowError(type="invalid_prompt", node_id=node_id,
                              message="A node must be an object with class_type and inputs",
                              details=f"Node ID '#{node_id}' is a {type(node).__name__}"))
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            add(WorkflowError(type="invalid_prompt", node_id=node_id,
                              message="Cannot execute because a node is missing the class_type property.",
                              details=f"Node ID '#{node_id}'"))
            continue
        inputs = node.get("inputs", {})
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            add(WorkflowError(type="invalid_prompt", node_id=node_id, class_type=class_type,
                              message="A node's inputs must be an object of input name to value or link",
                              details=f"Node ID '#{node_id}' has inputs of type {type(inputs).__name__}"))
            continue
        nodes[node_id] = (class_type, inputs)
        if class_type not in class_checks:
            class_checks[class_type] = _class_check(class_type, registry, node_id, add)
        if class_checks[class_type] is None and class_type not in registry:
            suggestions = registry.suggest(class_type)
            hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
            add(WorkflowError(type="missing_node_type", node_id=node_id, class_type=class_type,
                              message=f"Node type '{class_type}' not found.{hint}",
                              details=f"Node ID '#{node_id}'", extra_info={"suggestions": suggestions}))

    # 2. outputs -----------------------------------------------------------------------------------------
    if outputs is not None:
        output_ids = []
        for oid in outputs:
            if str(oid) in nodes:
                output_ids.append(str(oid))
            else:
                add(WorkflowError(type="invalid_prompt", message=f"Requested output node '{oid}' is not in the workflow",
                                  details=str(oid)))
    else:
        output_ids = [nid for nid, (ct, _) in nodes.items()
                      if (chk := class_checks.get(ct)) is not None and chk.output_node]
    if not output_ids and not errors:
        add(WorkflowError(type="prompt_no_outputs", message="Prompt has no outputs",
                          details="add an output node such as SaveImage, PreviewImage, SaveText or PreviewAny"))

    # 3. inputs of every node ----------------------------------------------------------------------------
    edges: dict[str, list[str]] = {}  # node -> upstream node ids (valid links only)
    normalised: dict[str, dict[str, Any]] = {}
    for node_id, (class_type, inputs) in nodes.items():
        chk = class_checks.get(class_type)
        ups: list[str] = []
        edges[node_id] = ups
        if chk is None:
            # still follow links so reachability and cycles are right
            for value in inputs.values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in nodes:
                    ups.append(str(value[0]))
            continue
        out_inputs: dict[str, Any] = {}
        normalised[node_id] = out_inputs
        for name, value in inputs.items():
            if name not in chk.by_name:
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in nodes:
                    ups.append(str(value[0]))
                warnings.append(_unknown_input(node_id, class_type, name, chk))
                out_inputs[name] = value
        for ic in chk.inputs:
            name = ic.name
            if name not in inputs:
                if ic.required and ic.default is not _NO_DEFAULT:
                    out_inputs[name] = ic.default
                    warnings.append(WorkflowError(
                        type="input_default_used", node_id=node_id, class_type=class_type, input_name=name,
                        message=f"Input '{name}' is not set; its default {_fmt(ic.default)} is used",
                        extra_info={"input_name": name, "default": ic.default}))
                elif ic.required:
                    add(WorkflowError(type="required_input_missing", node_id=node_id, class_type=class_type,
                                      input_name=name, message="Required input is missing", details=name,
                                      extra_info={"input_name": name, "input_config": ic.config}))
                continue
            value = inputs[name]
            if isinstance(value, list):
                link = _check_link(node_id, class_type, ic, value, nodes, class_checks, add)
                if link is not None:
                    out_inputs[name] = link
                if len(value) == 2 and isinstance(value[0], str | int) and str(value[0]) in nodes:
                    ups.append(str(value[0]))  # followed even when broken, so upstream problems show too
                continue
            kind = ic.kind
            if kind not in WIDGET_TYPES:
                if kind != ANY_TYPE and any(t.strip() in registry.socket_types() for t in kind.split(",")):
                    add(WorkflowError(
                        type="literal_for_link_input", node_id=node_id, class_type=class_type, input_name=name,
                        message=f"Input '{name}' takes a {kind} from another node's output, not a literal value",
                        details=f"{name}, {_fmt(value)}",
                        extra_info={"input_name": name, "input_config": ic.config, "received_value": value}))
                    continue
                out_inputs[name] = value
                continue
            try:
                value = _convert(kind, value)
            except (TypeError, ValueError, OverflowError) as exc:
                add(WorkflowError(type="invalid_input_type", node_id=node_id, class_type=class_type,
                                  input_name=name, message=f"Failed to convert an input value to a {kind} value",
                                  details=f"{name}, {_fmt(value)}, {exc}",
                                  extra_info={"input_name": name, "input_config": ic.config,
                                              "received_value": value, "exception_message": str(exc)}))
                continue
            if not ic.skip_range:
                if ic.lo is not None and kind in ("INT", "FLOAT") and value < ic.lo:
                    add(WorkflowError(type="value_smaller_than_min", node_id=node_id, class_type=class_type,
                                      input_name=name, message=f"Value {value} smaller than min of {ic.lo}",
                                      details=name, extra_info={"input_name": name, "input_config": ic.config,
                                                                "received_value": value}))
                    continue
                if ic.hi is not None and kind in ("INT", "FLOAT") and value > ic.hi:
                    add(WorkflowError(type="value_bigger_than_max", node_id=node_id, class_type=class_type,
                                      input_name=name, message=f"Value {value} bigger than max of {ic.hi}",
                                      details=name, extra_info={"input_name": name, "input_config": ic.config,
                                                                "received_value": value}))
                    continue
                if ic.choices is not None and not _in_choices(value, ic.choices):
                    add(_not_in_list(node_id, class_type, ic, value))
                    continue
            out_inputs[name] = value

    # 4. reachability from the outputs ------------------------------------------------------------------
    needed: set[str] = set()
    stack = [o for o in output_ids]
    while stack:
        nid = stack.pop()
        if nid in needed:
            continue
        needed.add(nid)
        stack.extend(u for u in edges.get(nid, ()) if u not in needed)

    # Errors in nodes no output needs do not stop the run (ComfyUI ignores them too): make them warnings.
    if node_error_ids - needed and output_ids:
        kept = []
        for err in errors:
            if err.node_id is not None and err.node_id not in needed and err.type != "missing_node_type":
                warnings.append(err.model_copy(update={"message": err.message + " (node not needed by any output)"}))
            else:
                kept.append(err)
        errors[:] = kept
        node_error_ids = {e.node_id for e in errors if e.node_id is not None}
    for nid in nodes:
        if nid not in needed and output_ids:
            warnings.append(WorkflowError(type="unreachable_node", node_id=nid, class_type=nodes[nid][0],
                                          message="No output needs this node, so it will not run"))

    # 5. dependency order and cycles ----------------------------------------------------------------------
    order = _topological_order(needed, edges, prompt_order=list(nodes))
    if len(order) < len(needed):
        for cycle in _find_cycles(set(needed) - set(order), edges):
            first = cycle[0]
            add(WorkflowError(type="dependency_cycle", node_id=first, class_type=nodes[first][0],
                              message=f"Dependency cycle: {' -> '.join(cycle + [first])}",
                              details=", ".join(cycle), extra_info={"cycle": cycle}))

    # 6. the nodes' own VALIDATE_INPUTS -----------------------------------------------------------------
    for nid in (order if len(order) == len(needed) else [n for n in nodes if n in needed]):
        class_type, inputs = nodes[nid]
        chk = class_checks.get(class_type)
        if chk is None or chk.validate_fn is None:
            continue
        _run_custom_validation(nid, class_type, chk, normalised.get(nid, {}), nodes, class_checks, add,
                               quiet_exceptions=nid in node_error_ids)

    # 7. verdict -------------------------------------------------------------------------------------------
    good = _good_outputs(output_ids, edges, {e.node_id for e in errors if e.node_id is not None}) \
        if errors else list(output_ids)
    if errors:
        return ValidationResult(valid=False, errors=errors, warnings=warnings, outputs=output_ids,
                                good_outputs=good)
    plan_prompt: dict[str, dict[str, Any]] = {}
    for nid in order:
        entry: dict[str, Any] = {"class_type": nodes[nid][0], "inputs": normalised.get(nid, {})}
        meta = prompt[nid].get("_meta") if isinstance(prompt.get(nid), dict) else None
        if meta is None and nid not in prompt:
            meta = _find_meta(prompt, nid)
        if isinstance(meta, dict):
            entry["_meta"] = meta
        plan_prompt[nid] = entry
    plan = Plan.model_construct(prompt=plan_prompt, order=order, outputs=output_ids, extra={})
    return ValidationResult(valid=True, errors=[], warnings=warnings, outputs=output_ids,
                            good_outputs=output_ids, plan=plan)


def _find_meta(prompt: dict, nid: str) -> Any:
    for key, node in prompt.items():
        if str(key) == nid and isinstance(node, dict):
            return node.get("_meta")
    return None


def _class_check(class_type: str, registry: NodeRegistry, node_id: str, add) -> _ClassCheck | None:
    if class_type not in registry:
        return None
    try:
        spec = registry.spec(class_type)
        return _compile_class(spec, registry.get_class(class_type))
    except Exception as exc:
        add(WorkflowError(type="exception_during_validation", node_id=node_id, class_type=class_type,
                          message=f"Exception when reading the inputs of {class_type}",
                          details=str(exc), extra_info={"exception_type": type(exc).__name__}))
        return None


def _in_choices(value: Any, choices: Any) -> bool:
    try:
        return value in choices
    except TypeError:
        return False


def _not_in_list(node_id: str, class_type: str, ic: _InputCheck, value: Any) -> WorkflowError:
    options = ic.choices_list or []
    list_info = f"(list of length {len(options)})" if len(options) > 20 else str(options)
    close: list[str] = []
    if isinstance(value, str):
        import difflib

        close = difflib.get_close_matches(value, [str(o) for o in options], n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    if not options:
        hint = " The list is empty: no matching files are installed."
    return WorkflowError(type="value_not_in_list", node_id=node_id, class_type=class_type, input_name=ic.name,
                         message=f"Value not in list.{hint}", details=f"{ic.name}: {_fmt(value)} not in {list_info}",
                         extra_info={"input_name": ic.name, "received_value": value, "suggestions": close,
                                     "input_config": ic.config if len(options) <= 20 else None})


def _check_link(node_id: str, class_type: str, ic: _InputCheck, value: list, nodes: dict,
                class_checks: dict, add) -> list | None:
    if len(value) == 2 and type(value[1]) is int and type(value[0]) is str and value[0] in nodes:
        src_chk = class_checks.get(nodes[value[0]][0])
        if src_chk is not None and 0 <= value[1] < len(src_chk.output_types):
            received = src_chk.output_types[value[1]]
            if received is ic.types or types_compatible(received, ic.types):
                return [value[0], value[1]]
    name = ic.name
    if len(value) != 2 or not isinstance(value[0], str | int) or isinstance(value[0], bool) \
            or not isinstance(value[1], int) or isinstance(value[1], bool):
        add(WorkflowError(type="bad_linked_input", node_id=node_id, class_type=class_type, input_name=name,
                          message="Bad linked input, must be a length-2 list of [node_id, slot_index]",
                          details=name, extra_info={"input_name": name, "received_value": value}))
        return None
    src_id, slot = str(value[0]), value[1]
    if src_id not in nodes:
        add(WorkflowError(type="dangling_link", node_id=node_id, class_type=class_type, input_name=name,
                          message=f"Input '{name}' is linked to node '{src_id}', which is not in the workflow",
                          details=f"{name}, linked node {src_id}",
                          extra_info={"input_name": name, "linked_node": [src_id, slot]}))
        return None
    src_chk = class_checks.get(nodes[src_id][0])
    if src_chk is None:
        return [src_id, slot]  # the source's own error is reported on the source
    if slot < 0 or slot >= len(src_chk.output_types):
        count = len(src_chk.output_types)
        add(WorkflowError(type="output_index_out_of_range", node_id=node_id, class_type=class_type,
                          input_name=name,
                          message=(f"Input '{name}' reads output {slot} of node '{src_id}' ({nodes[src_id][0]}), "
                                   f"which has {count} output(s)"),
                          details=f"{name}, linked node [{src_id}, {slot}]",
                          extra_info={"input_name": name, "linked_node": [src_id, slot], "output_count": count}))
        return None
    received = src_chk.output_types[slot]
    if not types_compatible(received, ic.types):
        received_text = ",".join(sorted(received))
        add(WorkflowError(type="return_type_mismatch", node_id=node_id, class_type=class_type, input_name=name,
                          message="Return type mismatch between linked nodes",
                          details=f"{name}, received_type({received_text}) mismatch input_type({ic.kind})",
                          extra_info={"input_name": name, "input_config": ic.config, "received_type": received_text,
                                      "linked_node": [src_id, slot]}))
        return None
    return [src_id, slot]


def _run_custom_validation(nid: str, class_type: str, chk: _ClassCheck, normalised: dict,
                           nodes: dict, class_checks: dict, add, quiet_exceptions: bool = False) -> None:
    """Call the class's VALIDATE_INPUTS as ComfyUI does (linked inputs are None until run time)."""
    args: dict[str, Any] = {}
    received_types: dict[str, str] = {}
    for ic in chk.inputs:
        if ic.name in normalised:
            value = normalised[ic.name]
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                src = class_checks.get(nodes[value[0]][0])
                if src is not None and value[1] < len(src.output_types):
                    received_types[ic.name] = ",".join(sorted(src.output_types[value[1]]))
                value = None  # linked: the value is known only at run time
            if ic.name in chk.validate_args or chk.validate_kwargs:
                args[ic.name] = [value] if chk.input_is_list else value
    if "input_types" in chk.validate_args:
        args["input_types"] = [received_types] if chk.input_is_list else received_types
    try:
        result = chk.validate_fn(**args)
    except Exception as exc:
        if quiet_exceptions:  # the node already has errors that explain missing arguments
            return
        add(WorkflowError(type="exception_during_validation", node_id=nid, class_type=class_type,
                          message="Exception when validating node", details=str(exc),
                          extra_info={"exception_type": type(exc).__name__,
                                      "traceback": traceback.format_exception_only(type(exc), exc)}))
        return
    results = result if chk.input_is_list and isinstance(result, list) else [result]
    for r in results:
        if r is not True:
            input_name = chk.validate_args[0] if len(chk.validate_args) == 1 else None
            if input_name is None and isinstance(r, str):  # the input the message names first
                named = sorted((r.find(a), a) for a in chk.validate_args if a in r)
                input_name = named[0][1] if named else None
            details = str(r) if r is not False else ", ".join(args)
            add(WorkflowError(type="custom_validation_failed", node_id=nid, class_type=class_type,
                              input_name=input_name, message=f"Custom validation failed for node: {details}",
                              details=details, extra_info={"input_name": input_name}))
            return


def _topological_order(needed: set[str], edges: dict[str, list[str]], prompt_order: list[str]) -> list[str]:
    """Kahn's algorithm; ties keep the workflow's own order so plans are stable."""
    indegree: dict[str, int] = {}
    downstream: dict[str, list[str]] = defaultdict(list)
    for n in prompt_order:
        if n not in needed:
            continue
        degree = 0
        for u in edges.get(n, ()):
            if u in needed:
                degree += 1
                downstream[u].append(n)
        indegree[n] = degree
    ready = deque(n for n, d in indegree.items() if d == 0)
    order = []
    append, popleft = order.append, ready.popleft
    while ready:
        n = popleft()
        append(n)
        for d in downstream.get(n, ()):
            indegree[d] -= 1
            if indegree[d] == 0:
                ready.append(d)
    return order


def _find_cycles(remaining: set[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Disjoint cycles among the nodes Kahn's algorithm could not order (iterative DFS)."""
    cycles: list[list[str]] = []
    color: dict[str, int] = {}  # 0 new, 1 on stack, 2 done
    for start in sorted(remaining):
        if color.get(start):
            continue
        path: list[str] = []
        on_path: dict[str, int] = {}
        iters = [(start, iter(u for u in edges.get(start, ()) if u in remaining))]
        color[start] = 1
        path.append(start)
        on_path[start] = 0
        while iters:
            node, it = iters[-1]
            nxt = next(it, None)
            if nxt is None:
                iters.pop()
                color[node] = 2
                path.pop()
                on_path.pop(node, None)
                continue
            if color.get(nxt) == 1 and nxt in on_path:
                cycle = path[on_path[nxt]:]
                cycles.append(list(reversed(cycle)))
            elif not color.get(nxt):
                color[nxt] = 1
                on_path[nxt] = len(path)
                path.append(nxt)
                iters.append((nxt, iter(u for u in edges.get(nxt, ()) if u in remaining)))
    return cycles


def _good_outputs(outputs: list[str], edges: dict[str, list[str]], bad: set[str]) -> list[str]:
    """Outputs none of whose ancestors has an error (computed downstream from the bad nodes)."""
    downstream: dict[str, list[str]] = {}
    for n, ups in edges.items():
        for u in ups:
            downstream.setdefault(u, []).append(n)
    tainted = set(bad)
    stack = list(bad)
    while stack:
        n = stack.pop()
        for d in downstream.get(n, ()):
            if d not in tainted:
                tainted.add(d)
                stack.append(d)
    return [o for o in outputs if o not in tainted]


def _unknown_input(node_id: str, class_type: str, name: str, chk: _ClassCheck) -> WorkflowError:
    import difflib

    close = difflib.get_close_matches(name, list(chk.by_name), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return WorkflowError(type="unknown_input", node_id=node_id, class_type=class_type, input_name=name,
                         message=f"{class_type} has no input '{name}'; it is ignored.{hint}",
                         details=f"declared inputs: {', '.join(chk.by_name)}",
                         extra_info={"input_name": name, "suggestions": close})
