"""Validation of API-format workflows against the registry: every problem at once, no recursion.

The walk is iterative (explicit stacks and Kahn's algorithm), so chains of any depth validate; per node
the work is a handful of dict lookups against a check table compiled once per class per call.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import reprlib
import traceback
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr
from rapidfuzz import fuzz, process

from compiler.errors import WorkflowError
from compiler.plan import Plan
from nodes.registry import NodeRegistry, combo_choices
from nodes.spec import ANY_TYPE, WIDGET_TYPES, NodeSpec, safe_text

_NO_DEFAULT = object()
_TRUE_STRINGS = {"true", "1", "yes", "on"}
_FALSE_STRINGS = {"false", "0", "no", "off", ""}


DEPENDENT_OUTPUTS_LIMIT = 20
"""How many dependent outputs one `node_errors` entry lists; beyond it the entry gives a count, so that a
report stays linear in the number of errors however the failing nodes fan out."""
DETAILS_LIMIT = 50
"""How many errors the top-level `details` text of `comfy_error()` spells out (node_errors has them all)."""
_COUNT_BUDGET_PER_ITEM = 4
_WHOLE_PROMPT_ERRORS = frozenset({"missing_node_type", "invalid_prompt"})
"""Errors for which ComfyUI refuses the whole prompt, good outputs or not (an unknown or malformed node)."""


class ValidationResult(BaseModel):
    """The verdict on a workflow.

    `plan` is set when there is no error, and also when `valid` is False but some outputs (`good_outputs`)
    need no failing node: it then runs just those, as ComfyUI queues the valid outputs of such a prompt and
    reports the rest in node_errors. Callers that run only valid workflows check `valid`, not `plan`.
    """

    valid: bool
    errors: list[WorkflowError] = Field(default_factory=list)
    warnings: list[WorkflowError] = Field(default_factory=list)
    outputs: list[str] = Field(default_factory=list)
    good_outputs: list[str] = Field(default_factory=list)
    plan: Plan | None = None
    # node id -> its `dependent_outputs` keys, computed by validate() with one traversal of the graph
    _dependents: dict[str, dict[str, Any]] | None = PrivateAttr(default=None)

    def node_errors(self) -> dict[str, dict[str, Any]]:
        """ComfyUI's `node_errors` shape: {node_id: {errors, dependent_outputs, class_type}}.

        `dependent_outputs` lists the outputs that need the node (at most DEPENDENT_OUTPUTS_LIMIT of them;
        then `dependent_outputs_count` says how many there are, with `dependent_outputs_count_exact` false
        when that count is only a lower bound).
        """
        with _gc_paused():  # 100,000 new dicts would set off full collections over every live error
            return self._node_errors()

    def _node_errors(self) -> dict[str, dict[str, Any]]:
        by_node: dict[str, dict[str, Any]] = {}  # keyed by the ids as the workflow has them
        for err in self.errors:
            if err.node_id is None:
                continue
            entry = by_node.get(err.node_id)
            if entry is None:
                class_type = safe_text(err.class_type) if err.class_type is not None else None
                entry = by_node[err.node_id] = {"errors": [], "dependent_outputs": [], "class_type": class_type}
            entry["errors"].append(err.to_comfy())
        fallback: dict[str, Any] | None = None
        dependents = self._dependents or {}  # private attributes are slow to read: once, not per entry
        result: dict[str, dict[str, Any]] = {}
        for node_id, entry in by_node.items():
            known = dependents.get(node_id)
            if known is None:
                if fallback is None:  # a result built by hand: every failing output, abbreviated
                    good = set(self.good_outputs)
                    fallback = _abbreviated([o for o in self.outputs if o not in good], exact=True)
                known = fallback
            entry.update(known)
            result[safe_text(node_id)] = entry  # lone surrogates in ids cannot leave as UTF-8
        return result

    def comfy_error(self) -> dict[str, Any] | None:
        """ComfyUI's top-level `error` for POST /prompt, or None when valid."""
        if self.valid:
            return None
        global_errors = [e for e in self.errors if e.node_id is None]
        if global_errors:
            return global_errors[0].to_comfy()
        lines = [f"{e.message}: {e.details}" for e in self.errors[:DETAILS_LIMIT]]
        if len(self.errors) > DETAILS_LIMIT:
            lines.append(f"... and {len(self.errors) - DETAILS_LIMIT} more error(s), listed in node_errors")
        return {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                "details": "\n".join(lines), "extra_info": {}}

    def summary(self) -> str:
        if self.valid and self.plan is not None:
            return f"valid: {len(self.plan.order)} nodes to run for {len(self.outputs)} output(s)"
        return f"invalid: {len(self.errors)} error(s)"


def _abbreviated(outputs: list[str], *, exact: bool, total: int | None = None) -> dict[str, Any]:
    """The `dependent_outputs` keys of one node_errors entry, the list cut at DEPENDENT_OUTPUTS_LIMIT."""
    total = len(outputs) if total is None else total
    entry: dict[str, Any] = {"dependent_outputs": [safe_text(o) for o in outputs[:DEPENDENT_OUTPUTS_LIMIT]]}
    if total > DEPENDENT_OUTPUTS_LIMIT:
        entry["dependent_outputs_count"] = total
        entry["dependent_outputs_count_exact"] = exact
    return entry


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
    skip_link_type: bool = False  # VALIDATE_INPUTS takes input_types: it judges linked types itself
    default: Any = None       # filled in when a required widget input is left out
    plain_text: bool = False  # a STRING without choices: any str passes unchanged
    accepts: dict[frozenset[str], bool] = field(default_factory=dict)  # output types seen -> compatible?


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
    # per input VALIDATE_INPUTS judges: the choices only a remote ComfyUI server offers (a file in its
    # input folder, not ours); a node naming one runs there, so the server validates it, not our check
    remote_only: dict[str, set] = field(default_factory=dict)


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
            skip_link_type="input_types" in validate_args,
            default=_widget_default(ispec),
            plain_text=ispec.type == "STRING" and choices is None,
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


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 8, 6


def _fmt(value: Any) -> str:
    """A short repr for messages; bounded in depth, so nested input cannot make it recurse or balloon."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _id_text(value: Any) -> str | None:
    """A node id as the text key it is in the workflow, or None for what cannot be one (lists, bools, ...)."""
    kind = type(value)
    if kind is str:
        return value
    if kind is int and -10**15 < value < 10**15:
        return str(value)
    return None


def _link_source(value: Any, nodes: dict) -> str | None:
    """The id of the node a `[node_id, slot]` value links to, when that node is in the workflow."""
    if type(value) is list and len(value) == 2:
        source = _id_text(value[0])
        if source is not None and source in nodes:
            return source
    return None


def validate(prompt: Any, registry: NodeRegistry, *, outputs: Iterable[str] | None = None) -> ValidationResult:
    """Validate an API-format workflow; report every problem, and compile a Plan when there is none.

    The cyclic garbage collector is paused meanwhile: validation makes no reference cycles, and on a
    100,000-node workflow the collector's passes over the new containers cost as much as the checks.
    """
    with _gc_paused():
        return _validate(prompt, registry, outputs)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic collector while building many containers that hold no reference cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _validate(prompt: Any, registry: NodeRegistry, outputs: Iterable[str] | None) -> ValidationResult:
    """The phases in order; each one reports into the same run, so every problem is found at once."""
    if not isinstance(prompt, dict):
        return ValidationResult(valid=False, errors=[WorkflowError(
            type="invalid_prompt", message="A workflow must be a JSON object mapping node ids to nodes",
            details=f"got {type(prompt).__name__}")])
    if not prompt:
        return ValidationResult(valid=False, errors=[WorkflowError(
            type="prompt_no_outputs", message="Prompt has no outputs", details="the workflow has no nodes")])
    run = _Run(prompt, registry)
    run.read_nodes()
    output_ids = run.pick_outputs(outputs)
    run.check_inputs()
    needed = run.needed_by(output_ids)
    run.demote_unneeded(needed, output_ids)
    order = run.order(needed)
    run.custom_validation(order if len(order) == len(needed) else [n for n in run.nodes if n in needed])
    if run.errors:
        return run.failure(order, output_ids)
    return run.success(order, output_ids)


class _Run:
    """One validation: the workflow read into nodes and links, and the errors and warnings found so far."""

    def __init__(self, prompt: dict, registry: NodeRegistry) -> None:
        self.prompt = prompt
        self.registry = registry
        self.errors: list[WorkflowError] = []
        self.warnings: list[WorkflowError] = []
        self.node_error_ids: set[str] = set()
        self.nodes: dict[str, tuple[str, dict]] = {}
        self.class_checks: dict[str, _ClassCheck | None] = {}
        self.edges: dict[str, list[str]] = {}  # node -> upstream node ids
        self.normalised: dict[str, dict[str, Any]] = {}
        self.suggestions: dict[str, list[str]] = {}  # unknown class -> close names, once per class
        self.input_hints: dict[tuple[str, str], list[str]] = {}
        self.choice_hints: dict[tuple[str, str, str], list[str]] = {}

    def add(self, err: WorkflowError) -> None:
        self.errors.append(err)
        if err.node_id is not None:
            self.node_error_ids.add(err.node_id)

    # ---- 1. node shapes and classes -------------------------------------------------------------------
    def read_nodes(self) -> None:
        add, nodes, checks = self.add, self.nodes, self.class_checks
        for raw_id, node in self.prompt.items():
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
            if class_type not in checks:
                checks[class_type] = _class_check(class_type, self.registry, node_id, add)
            if checks[class_type] is None and class_type not in self.registry:
                self._missing_class(node_id, class_type)

    def _missing_class(self, node_id: str, class_type: str) -> None:
        suggestions = self.suggestions.get(class_type)
        if suggestions is None:
            suggestions = self.suggestions[class_type] = self.registry.suggest(class_type)
        hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        self.add(WorkflowError(type="missing_node_type", node_id=node_id, class_type=class_type,
                               message=f"Node type '{class_type}' not found.{hint}",
                               details=f"Node ID '#{node_id}'", extra_info={"suggestions": list(suggestions)}))

    # ---- 2. outputs -----------------------------------------------------------------------------------
    def pick_outputs(self, outputs: Iterable[str] | None) -> list[str]:
        if outputs is not None:
            output_ids = []
            for oid in outputs:
                key = _id_text(oid)
                if key is not None and key in self.nodes:
                    output_ids.append(key)
                else:
                    shown = key if key is not None else _fmt(oid)
                    self.add(WorkflowError(type="invalid_prompt", details=shown,
                                           message=f"Requested output node '{shown}' is not in the workflow"))
        else:
            output_ids = [nid for nid, (ct, _) in self.nodes.items()
                          if (chk := self.class_checks.get(ct)) is not None and chk.output_node]
        if not output_ids and not self.errors:
            self.add(WorkflowError(type="prompt_no_outputs", message="Prompt has no outputs",
                                   details="add an output node such as SaveImage, PreviewImage, SaveText or PreviewAny"))
        return output_ids

    # ---- 3. inputs of every node ----------------------------------------------------------------------
    def check_inputs(self) -> None:
        nodes = self.nodes
        for node_id, (class_type, inputs) in nodes.items():
            chk = self.class_checks.get(class_type)
            if chk is None:  # still follow links so reachability and cycles are right
                self.edges[node_id] = [s for v in inputs.values() if (s := _link_source(v, nodes)) is not None]
                continue
            self.edges[node_id] = self._check_node(node_id, class_type, chk, inputs)

    def _check_node(self, node_id: str, class_type: str, chk: _ClassCheck, inputs: dict) -> list[str]:
        """Check one node's inputs against its class; returns the ids of the nodes it reads from."""
        nodes = self.nodes
        ups: list[str] = []
        out_inputs: dict[str, Any] = {}
        self.normalised[node_id] = out_inputs
        for name, value in inputs.items():
            if name not in chk.by_name:
                source = _link_source(value, nodes)
                if source is not None:
                    ups.append(source)
                self.warnings.append(self._unknown_input(node_id, class_type, name, chk))
                out_inputs[name] = value
        for ic in chk.inputs:
            name = ic.name
            if name not in inputs:
                self._missing_input(node_id, class_type, ic, out_inputs)
                continue
            value = inputs[name]
            if type(value) is list:
                link = _check_link(node_id, class_type, ic, value, nodes, self.class_checks, self.add)
                if link is not None:
                    out_inputs[name] = link
                    ups.append(link[0])
                elif (source := _link_source(value, nodes)) is not None:
                    ups.append(source)  # followed even when broken, so upstream problems show too
                continue
            if ic.plain_text and type(value) is str:  # the common case: text for a free text input
                out_inputs[name] = value
                continue
            ok, value = self._check_literal(node_id, class_type, ic, value)
            if ok:
                out_inputs[name] = value
        return ups

    def _missing_input(self, node_id: str, class_type: str, ic: _InputCheck, out_inputs: dict) -> None:
        name = ic.name
        if ic.required and ic.default is not _NO_DEFAULT:
            out_inputs[name] = ic.default
            self.warnings.append(WorkflowError(
                type="input_default_used", node_id=node_id, class_type=class_type, input_name=name,
                message=f"Input '{name}' is not set; its default {_fmt(ic.default)} is used",
                extra_info={"input_name": name, "default": ic.default}))
        elif ic.required:
            self.add(WorkflowError(type="required_input_missing", node_id=node_id, class_type=class_type,
                                   input_name=name, message="Required input is missing", details=name,
                                   extra_info={"input_name": name, "input_config": ic.config}))

    def _check_literal(self, node_id: str, class_type: str, ic: _InputCheck, value: Any) -> tuple[bool, Any]:
        """Convert and range-check a literal like ComfyUI; (False, _) after reporting why it is bad."""
        kind, name = ic.kind, ic.name
        if kind not in WIDGET_TYPES:
            if ic.skip_range or ic.skip_link_type:  # VALIDATE_INPUTS takes this input or judges input types:
                return True, value                    # ComfyUI leaves the literal to the node
            if kind != ANY_TYPE and any(t.strip() in self.registry.socket_types() for t in kind.split(",")):
                self.add(WorkflowError(
                    type="literal_for_link_input", node_id=node_id, class_type=class_type, input_name=name,
                    message=f"Input '{name}' takes a {kind} from another node's output, not a literal value",
                    details=f"{name}, {_fmt(value)}",
                    extra_info={"input_name": name, "input_config": ic.config, "received_value": value}))
                return False, value
            return True, value
        try:
            value = _convert(kind, value)
        except (TypeError, ValueError, OverflowError) as exc:
            self.add(WorkflowError(type="invalid_input_type", node_id=node_id, class_type=class_type,
                                   input_name=name, message=f"Failed to convert an input value to a {kind} value",
                                   details=f"{name}, {_fmt(value)}, {exc}",
                                   extra_info={"input_name": name, "input_config": ic.config,
                                               "received_value": value, "exception_message": str(exc)}))
            return False, value
        if ic.skip_range:
            return True, value
        if ic.lo is not None and kind in ("INT", "FLOAT") and value < ic.lo:
            self.add(WorkflowError(type="value_smaller_than_min", node_id=node_id, class_type=class_type,
                                   input_name=name, message=f"Value {value} smaller than min of {ic.lo}",
                                   details=name, extra_info={"input_name": name, "input_config": ic.config,
                                                             "received_value": value}))
            return False, value
        if ic.hi is not None and kind in ("INT", "FLOAT") and value > ic.hi:
            self.add(WorkflowError(type="value_bigger_than_max", node_id=node_id, class_type=class_type,
                                   input_name=name, message=f"Value {value} bigger than max of {ic.hi}",
                                   details=name, extra_info={"input_name": name, "input_config": ic.config,
                                                             "received_value": value}))
            return False, value
        if ic.choices is not None and not _in_choices(value, ic.choices):
            self.add(self._not_in_list(node_id, class_type, ic, value))
            return False, value
        return True, value

    def _unknown_input(self, node_id: str, class_type: str, name: Any, chk: _ClassCheck) -> WorkflowError:
        shown = name if isinstance(name, str) else _fmt(name)
        close = self.input_hints.get((class_type, shown))
        if close is None:
            close = self.input_hints[(class_type, shown)] = close_matches(shown, list(chk.by_name), 2, 0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return WorkflowError(type="unknown_input", node_id=node_id, class_type=class_type, input_name=shown,
                             message=f"{class_type} has no input '{shown}'; it is ignored.{hint}",
                             details=f"declared inputs: {', '.join(chk.by_name)}",
                             extra_info={"input_name": shown, "suggestions": list(close)})

    def _not_in_list(self, node_id: str, class_type: str, ic: _InputCheck, value: Any) -> WorkflowError:
        options = ic.choices_list or []
        list_info = f"(list of length {len(options)})" if len(options) > 20 else _fmt(options)
        close: list[str] = []
        if isinstance(value, str):
            key = (class_type, ic.name, value)
            if key not in self.choice_hints:
                self.choice_hints[key] = close_matches(value, [str(o) for o in options], 3, 0.5)
            close = self.choice_hints[key]
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        if not options:
            hint = " The list is empty: no matching files are installed."
        return WorkflowError(type="value_not_in_list", node_id=node_id, class_type=class_type, input_name=ic.name,
                             message=f"Value not in list.{hint}", details=f"{ic.name}: {_fmt(value)} not in {list_info}",
                             extra_info={"input_name": ic.name, "received_value": value, "suggestions": list(close),
                                         "input_config": ic.config if len(options) <= 20 else None})

    # ---- 4. reachability from the outputs -------------------------------------------------------------
    def needed_by(self, output_ids: list[str]) -> set[str]:
        needed: set[str] = set()
        stack = list(output_ids)
        edges = self.edges
        while stack:
            nid = stack.pop()
            if nid in needed:
                continue
            needed.add(nid)
            stack.extend(u for u in edges.get(nid, ()) if u not in needed)
        return needed

    def demote_unneeded(self, needed: set[str], output_ids: list[str]) -> None:
        """Errors in nodes no output needs do not stop the run (ComfyUI ignores them too): make them warnings."""
        if not output_ids:
            return
        if self.node_error_ids - needed:
            kept = []
            for err in self.errors:
                if err.node_id is not None and err.node_id not in needed and err.type != "missing_node_type":
                    self.warnings.append(err.model_copy(
                        update={"message": err.message + " (node not needed by any output)"}))
                else:
                    kept.append(err)
            self.errors[:] = kept
            self.node_error_ids = {e.node_id for e in self.errors if e.node_id is not None}
        for nid in self.nodes:
            if nid not in needed:
                self.warnings.append(WorkflowError(type="unreachable_node", node_id=nid, class_type=self.nodes[nid][0],
                                                   message="No output needs this node, so it will not run"))

    # ---- 5. dependency order and cycles ---------------------------------------------------------------
    def order(self, needed: set[str]) -> list[str]:
        order = _topological_order(needed, self.edges, prompt_order=list(self.nodes))
        if len(order) < len(needed):
            for cycle in _find_cycles(set(needed) - set(order), self.edges):
                first = cycle[0]
                self.add(WorkflowError(type="dependency_cycle", node_id=first, class_type=self.nodes[first][0],
                                       message=f"Dependency cycle: {' -> '.join(cycle + [first])}",
                                       details=", ".join(cycle), extra_info={"cycle": cycle}))
        return order

    # ---- 6. the nodes' own VALIDATE_INPUTS ------------------------------------------------------------
    def custom_validation(self, node_ids: list[str]) -> None:
        for nid in node_ids:
            class_type, _inputs = self.nodes[nid]
            chk = self.class_checks.get(class_type)
            if chk is None or chk.validate_fn is None:
                continue
            if chk.remote_only and _names_remote_only(chk, self.normalised.get(nid, {})):
                continue  # e.g. a LoadImage of a file in the server's input folder: it checks it there
            _run_custom_validation(nid, class_type, chk, self.normalised.get(nid, {}), self.nodes,
                                   self.class_checks, self.add, quiet_exceptions=nid in self.node_error_ids)

    # ---- 7. verdict -----------------------------------------------------------------------------------
    def failure(self, order: list[str], output_ids: list[str]) -> ValidationResult:
        """Invalid: every error, and (as ComfyUI queues the outputs that validate) a plan for the good outputs
        when some are good and no error spoils the whole prompt."""
        bad = {e.node_id for e in self.errors if e.node_id is not None}
        good, dependents = _dependent_outputs(output_ids, self.edges, bad)
        plan = None
        if good and not any(e.node_id is None or e.type in _WHOLE_PROMPT_ERRORS for e in self.errors):
            needed = self.needed_by(good)  # no failing node is upstream of a good output
            plan = self._plan([n for n in order if n in needed], good)
        result = ValidationResult(valid=False, errors=self.errors, warnings=self.warnings, outputs=output_ids,
                                  good_outputs=good, plan=plan)
        result._dependents = dependents
        return result

    def success(self, order: list[str], output_ids: list[str]) -> ValidationResult:
        return ValidationResult(valid=True, errors=[], warnings=self.warnings, outputs=output_ids,
                                good_outputs=output_ids, plan=self._plan(order, output_ids))

    def _plan(self, order: list[str], output_ids: list[str]) -> Plan:
        """The Plan running `order` (topological, checked nodes only) for `output_ids`."""
        prompt, nodes, normalised = self.prompt, self.nodes, self.normalised
        plan_prompt: dict[str, dict[str, Any]] = {}
        for nid in order:
            entry: dict[str, Any] = {"class_type": nodes[nid][0], "inputs": normalised.get(nid, {})}
            node = prompt.get(nid)
            meta = node.get("_meta") if isinstance(node, dict) else _find_meta(prompt, nid)
            if isinstance(meta, dict):
                entry["_meta"] = meta
            plan_prompt[nid] = entry
        return Plan.model_construct(prompt=plan_prompt, order=order, outputs=output_ids, extra={})


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
        chk = _compile_class(spec, registry.get_class(class_type))
        if chk.validate_fn is not None and registry.remote_sources:
            chk.remote_only = _remote_only_choices(chk, registry.local_info(class_type))
        return chk
    except Exception as exc:
        add(WorkflowError(type="exception_during_validation", node_id=node_id, class_type=class_type,
                          message=f"Exception when reading the inputs of {class_type}",
                          details=str(exc), extra_info={"exception_type": type(exc).__name__}))
        return None


def _remote_only_choices(chk: _ClassCheck, local: dict[str, Any]) -> dict[str, set]:
    """For the combo inputs VALIDATE_INPUTS judges: the choices a remote server's catalog added to ours."""
    sections = local.get("input") if isinstance(local.get("input"), dict) else {}
    found: dict[str, set] = {}
    for ic in chk.inputs:
        if ic.choices_list is None or not (ic.name in chk.validate_args or chk.validate_kwargs):
            continue
        spec = next((s[ic.name] for s in sections.values() if isinstance(s, dict) and ic.name in s), None)
        ours = combo_choices(spec) or []
        theirs = {c for c in ic.choices_list if isinstance(c, str | int | float)} - set(ours)
        if theirs:
            found[ic.name] = theirs
    return found


def _names_remote_only(chk: _ClassCheck, normalised: dict) -> bool:
    """Whether a node names a choice only a remote server has (it will run there and be validated there)."""
    return any(isinstance(normalised.get(name), str | int | float) and _in_choices(normalised[name], choices)
               for name, choices in chk.remote_only.items())


def _in_choices(value: Any, choices: Any) -> bool:
    try:
        return value in choices
    except (TypeError, RecursionError):  # unhashable, or a comparison too deep to finish: not a choice
        return False


def _check_link(node_id: str, class_type: str, ic: _InputCheck, value: list, nodes: dict,
                class_checks: dict, add) -> list | None:
    if len(value) == 2 and type(value[1]) is int and type(value[0]) is str and value[0] in nodes:
        src_chk = class_checks.get(nodes[value[0]][0])
        if src_chk is not None and 0 <= value[1] < len(src_chk.output_types):
            received = src_chk.output_types[value[1]]
            accepted = ic.accepts.get(received)
            if accepted is None:
                accepted = ic.accepts[received] = types_compatible(received, ic.types)
            if accepted:
                return [value[0], value[1]]
    name = ic.name
    src_id = _id_text(value[0]) if len(value) == 2 else None
    slot = value[1] if len(value) == 2 else None
    if src_id is None or not isinstance(slot, int) or isinstance(slot, bool) or not -10**15 < slot < 10**15:
        add(WorkflowError(type="bad_linked_input", node_id=node_id, class_type=class_type, input_name=name,
                          message="Bad linked input, must be a length-2 list of [node_id, slot_index]",
                          details=name, extra_info={"input_name": name, "received_value": value}))
        return None
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
    if not ic.skip_link_type and not types_compatible(received, ic.types):
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
                    received_types[ic.name] = src.spec.outputs[value[1]].type  # as RETURN_TYPES spells it
                value = None  # linked: the value is known only at run time
            if ic.name in chk.validate_args or chk.validate_kwargs:
                args[ic.name] = [value] if chk.input_is_list else value
    if "input_types" in chk.validate_args:
        args["input_types"] = [received_types] if chk.input_is_list else received_types
    try:
        result = chk.validate_fn(**args)
        if inspect.isawaitable(result):  # an async VALIDATE_INPUTS, as ComfyUI allows
            result = _await(result)
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


def _await(awaitable: Any) -> Any:
    """The value of a coroutine from sync code: on a fresh event loop here, or on a worker thread when this
    thread already runs a loop (validate() called inside async code), which cannot be re-entered."""
    async def wrapped() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wrapped())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate-async") as pool:
        return pool.submit(asyncio.run, wrapped()).result()


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


def _dependent_outputs(outputs: list[str], edges: dict[str, list[str]],
                       bad: set[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The outputs no failing node feeds, and for each failing node its `dependent_outputs` keys.

    One pass downstream from the failing nodes finds the spoilt part of the graph; one pass upstream from
    the spoilt outputs hands each node at most DEPENDENT_OUTPUTS_LIMIT output ids (and a mark when there
    are more), so the work is O(links x limit) and the report O(errors x limit) whatever the graph's shape.
    """
    downstream: dict[str, list[str]] = {}
    for n, ups in edges.items():
        for u in ups:
            downstream.setdefault(u, []).append(n)
    tainted = set(bad)
    stack = list(bad)
    while stack:
        for d in downstream.get(stack.pop(), ()):
            if d not in tainted:
                tainted.add(d)
                stack.append(d)
    good = [o for o in outputs if o not in tainted]
    spoilt = [o for o in outputs if o in tainted]
    labels, more = _spread_labels(spoilt, edges, tainted)
    budget = [_COUNT_BUDGET_PER_ITEM * (len(edges) + sum(map(len, edges.values()))) + 10_000]
    spoilt_set = set(spoilt)
    dependents: dict[str, dict[str, Any]] = {}
    for b in bad:
        listed = list(labels.get(b, ()))
        if b in more:
            total, exact = _count_outputs(b, downstream, spoilt_set, budget)
            dependents[b] = _abbreviated(listed, exact=exact, total=max(total, DEPENDENT_OUTPUTS_LIMIT + 1))
        else:
            dependents[b] = _abbreviated(listed, exact=True)
    return good, dependents


def _spread_labels(spoilt: list[str], edges: dict[str, list[str]],
                   tainted: set[str]) -> tuple[dict[str, dict[str, None]], set[str]]:
    """Breadth-first from each spoilt output upstream: every node collects the nearest outputs it feeds,
    up to the limit; `more` holds the nodes that feed more (a node accepts each label once, so cycles end)."""
    limit = DEPENDENT_OUTPUTS_LIMIT
    labels: dict[str, dict[str, None]] = {}
    more: set[str] = set()
    queue: deque[tuple[str, str | None]] = deque((o, o) for o in spoilt)
    while queue:
        node, label = queue.popleft()
        if label is None:
            if node in more:
                continue
            more.add(node)
        else:
            held = labels.get(node)
            if held is None:
                held = labels[node] = {}
            if label in held:
                continue
            if len(held) >= limit:
                if node in more:
                    continue
                more.add(node)
                label = None
            else:
                held[label] = None
        for u in edges.get(node, ()):
            if u in tainted:
                queue.append((u, label))
    return labels, more


def _count_outputs(start: str, downstream: dict[str, list[str]], outputs: set[str],
                   budget: list[int]) -> tuple[int, bool]:
    """How many outputs `start` feeds, while the shared step budget lasts; (count, exact)."""
    seen = {start}
    stack = [start]
    found = 1 if start in outputs else 0
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            return found, False
        for d in downstream.get(stack.pop(), ()):
            if d not in seen:
                seen.add(d)
                stack.append(d)
                found += d in outputs
    return found, True


def close_matches(word: str, candidates: list[str], limit: int, cutoff: float) -> list[str]:
    """The candidates most like `word` (difflib's ratio, computed by rapidfuzz), best first."""
    found = process.extract(word, candidates, scorer=fuzz.ratio, limit=limit, score_cutoff=cutoff * 100)
    return [match for match, _score, _index in found]
