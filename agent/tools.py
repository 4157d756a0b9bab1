"""The planner's tools over the ACTIVE catalog: the registry it was given (built-in, an imported /object_info or
a running ComfyUI's), the template library as that registry names it, and the model and input folders.

Each tool is a pure function returning a JSON-able dict whose size is bounded, so a 500-node catalog or a long
template cannot flood the model's context. Bad arguments come back as `{"error": {...}}`, never as an
exception, so the model can read the problem and try again. `PlannerTools` gives the same functions as
LangChain tools for `bind_tools`, a dispatcher for the calls a model makes, and one-line trace summaries.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field, ValidationError

from compiler import WorkflowFormatError, parse_text, validate
from nodes.registry import NodeRegistry
from runtime import folders
from runtime.errors import NodeWeaverError

MAX_NODE_HITS = 10
MAX_TEMPLATE_HITS = 8
MAX_SCHEMA_CHARS = 4_000
MAX_TEMPLATE_CHARS = 8_000
MAX_FILES = 200
MAX_ERRORS = 20


def _error(kind: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **({"details": details} if details else {})}}


def _clip(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit].rsplit("\n", 1)[0] + "\n", True)


# ---- nodes ------------------------------------------------------------------------------------------------
def search_nodes(registry: NodeRegistry, words: str = "", produces: str | None = None,
                 consumes: str | None = None, limit: int = 8) -> dict[str, Any]:
    """Node classes matching words and/or an output (produces) or input (consumes) socket type."""
    if not (words or "").strip() and not produces and not consumes:
        return _error("bad_arguments", "give words, produces or consumes (a socket type such as IMAGE)")
    limit = max(1, min(int(limit), MAX_NODE_HITS))
    hits = registry.search(words or "", produces=produces or None, consumes=consumes or None, limit=limit)
    result: dict[str, Any] = {"nodes": [{"name": h.name, "display_name": h.display_name, "category": h.category,
                                         "inputs": h.inputs, "outputs": h.outputs, "executable": h.executable}
                                        for h in hits]}
    unknown = [t for t in (produces, consumes) if t and t not in registry.socket_types()]
    if unknown:
        close = difflib.get_close_matches(unknown[0].upper(), sorted(registry.socket_types()), n=5, cutoff=0.5)
        result["hint"] = f"no node outputs the socket type {unknown[0]!r}; socket types like it: {close}"
    return result


def get_node(registry: NodeRegistry, name: str) -> dict[str, Any]:
    """One node's schema as compact text: inputs with types, defaults, ranges and choices; outputs."""
    if name not in registry:
        close = registry.suggest(str(name), limit=5)
        return _error("unknown_node", f"no node class {name!r} in this catalog", suggestions=close)
    schema, truncated = _clip(registry.describe(name), MAX_SCHEMA_CHARS)
    return {"name": name, "schema": schema, **({"truncated": True} if truncated else {})}


def node_line(registry: NodeRegistry, name: str) -> str:
    """One line per node for a starting list: name, input sockets and widgets, outputs."""
    spec = registry.spec(name)
    inputs = ", ".join(f"{i.name}:{i.type}" for i in spec.inputs)
    outputs = ", ".join(f"{o.name}:{o.type}" for o in spec.outputs) or "(output node)"
    return f"- {name}({inputs}) -> {outputs}"


# ---- templates --------------------------------------------------------------------------------------------
def _library(registry: NodeRegistry):
    from agent.templates import load_library

    return load_library(registry)


def search_templates(registry: NodeRegistry, words: str = "", task: str | None = None) -> dict[str, Any]:
    """ComfyUI's official templates matching the words (and task: t2i, i2v, controlnet …), best first."""
    try:
        found = _library(registry).search(words or "", task=task or None, limit=MAX_TEMPLATE_HITS)
    except NodeWeaverError as exc:
        return {"error": exc.to_dict()}
    templates = []
    for info in found:
        missing = [n for n in info.nodes if n not in registry]
        templates.append({"id": info.id, "title": info.title, "task": info.task, "tasks": info.tasks,
                          "models": [m.name for m in info.models][:8], "inputs": [i.name for i in info.inputs][:4],
                          "nodes_missing_here": missing[:5]})
    return {"templates": templates}


def get_template(registry: NodeRegistry, template_id: str) -> dict[str, Any]:
    """One template's workflow in the text form (what a draft is written in), to adapt."""
    try:
        text = _library(registry).workflow(template_id, to="text", registry=registry)
    except NodeWeaverError as exc:
        return {"error": exc.to_dict()}
    text, truncated = _clip(str(text), MAX_TEMPLATE_CHARS)
    return {"id": template_id, "workflow_text": text, **({"truncated": True} if truncated else {})}


# ---- folders ----------------------------------------------------------------------------------------------
def list_models(kind: str = "") -> dict[str, Any]:
    """Installed model files of one kind (checkpoints, loras, vae, controlnet …); no kind: the count per kind."""
    kinds = folders.model_kinds()
    if not kind:
        return {"kinds": {k: len(folders.model_files(k)) for k in kinds}}
    if folders.canonical_kind(kind) not in kinds:
        close = difflib.get_close_matches(kind, kinds, n=3, cutoff=0.4)
        return _error("unknown_model_kind", f"unknown model kind {kind!r}", kinds=kinds, suggestions=close)
    files = folders.model_files(kind)
    return {"kind": kind, "files": files[:MAX_FILES], "count": len(files)}


def list_inputs() -> dict[str, Any]:
    """Files in the input folder (images, masks, videos, audio) that loader nodes can name."""
    files = folders.input_files()
    return {"files": files[:MAX_FILES], "count": len(files)}


# ---- validation -------------------------------------------------------------------------------------------
def code_block(text: str) -> str:
    """The workflow inside a model's answer: its first fenced block, or the whole text."""
    match = re.search(r"```(?:python|py|text|json)?\s*\n(.*?)```", text, re.DOTALL)
    return (match.group(1) if match else text).strip() + "\n"


def read_workflow(text: str, registry: NodeRegistry) -> dict[str, Any]:
    """The text form, or API/UI JSON; raises WorkflowFormatError with structured errors."""
    if text.lstrip().startswith("{"):
        from compiler.formats import parse_source, to_api_workflow

        return to_api_workflow(parse_source(text), registry).prompt
    return parse_text(text, registry)


def compact_error(error: dict[str, Any]) -> dict[str, Any]:
    """The fields of a validation error a model needs to fix it."""
    keep = {k: error.get(k) for k in ("type", "node_id", "class_type", "input_name", "message", "details")
            if error.get(k) not in (None, "", [], {})}
    suggestions = (error.get("extra_info") or {}).get("suggestions")
    if suggestions:
        keep["suggestions"] = suggestions
    return keep


def validate_workflow(registry: NodeRegistry, workflow_text: str) -> dict[str, Any]:
    """Parse and validate a draft against the active catalog and the installed files: structured errors."""
    if not isinstance(workflow_text, str) or not workflow_text.strip():
        return _error("bad_arguments", "workflow_text is empty: pass the whole workflow in the text form")
    try:
        workflow = read_workflow(code_block(workflow_text), registry)
    except WorkflowFormatError as exc:
        errors = [compact_error(e.model_dump()) for e in exc.errors]
        return {"valid": False, "parsed": False, "errors": errors[:MAX_ERRORS], "error_count": len(errors)}
    result = validate(workflow, registry)
    errors = [compact_error(e.model_dump()) for e in result.errors]
    return {"valid": result.valid, "parsed": True, "nodes": len(workflow), "errors": errors[:MAX_ERRORS],
            "error_count": len(errors)}


# ---- the LangChain side -----------------------------------------------------------------------------------
class SearchNodesArgs(BaseModel):
    words: str = Field("", description="What the node does, in a few words (e.g. 'apply controlnet')")
    produces: str | None = Field(None, description="An output socket type the node must have, e.g. LATENT")
    consumes: str | None = Field(None, description="An input socket type the node must take, e.g. CONTROL_NET")


class GetNodeArgs(BaseModel):
    name: str = Field(description="The exact node class name, e.g. ControlNetApplyAdvanced")


class SearchTemplatesArgs(BaseModel):
    words: str = Field("", description="What the workflow does, e.g. 'wan image to video'")
    task: str | None = Field(None, description="t2i, i2i, i2v, t2v, controlnet, inpaint, upscale, edit …")


class GetTemplateArgs(BaseModel):
    id: str = Field(description="A template id from search_templates")


class ListModelsArgs(BaseModel):
    kind: str = Field("", description="checkpoints, loras, vae, text_encoders, diffusion_models, clip_vision, "
                                      "controlnet, upscale_models …; empty for the count of each kind")


class NoArgs(BaseModel):
    pass


class ValidateArgs(BaseModel):
    workflow_text: str = Field(description="The whole workflow in the text form")


TOOL_DESCRIPTIONS: dict[str, tuple[type[BaseModel], str]] = {
    "search_nodes": (SearchNodesArgs, "Find node classes in the active catalog by words and/or socket types."),
    "get_node": (GetNodeArgs, "One node's exact inputs (types, defaults, ranges, choices) and outputs."),
    "search_templates": (SearchTemplatesArgs, "Find ComfyUI's official workflow templates for a task."),
    "get_template": (GetTemplateArgs, "A template's whole workflow in the text form, to adapt."),
    "list_models": (ListModelsArgs, "Installed model files of a kind (the only names loaders accept)."),
    "list_inputs": (NoArgs, "Files in the input folder that LoadImage and other loaders can name."),
    "validate": (ValidateArgs, "Validate a draft workflow (text form): structured errors, or valid."),
}


class PlannerTools:
    """The tools bound to one registry: schemas for the model, execution of its calls, trace summaries."""

    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry

    def names(self) -> list[str]:
        return list(TOOL_DESCRIPTIONS)

    def langchain_tools(self) -> list[StructuredTool]:
        def make(name: str, schema: type[BaseModel], description: str) -> StructuredTool:
            return StructuredTool.from_function(func=lambda **kwargs: self.run(name, kwargs), name=name,
                                                description=description, args_schema=schema)

        return [make(name, schema, text) for name, (schema, text) in TOOL_DESCRIPTIONS.items()]

    def run(self, name: str, args: Any) -> dict[str, Any]:
        """Execute one call the model made; unknown tools and bad arguments are structured errors."""
        if name not in TOOL_DESCRIPTIONS:
            return _error("unknown_tool", f"no tool {name!r}", tools=self.names())
        schema = TOOL_DESCRIPTIONS[name][0]
        try:
            parsed = schema.model_validate(args if isinstance(args, dict) else {})
        except ValidationError as exc:
            problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            return _error("bad_arguments", f"bad arguments for {name}", problems=problems)
        return self._dispatch(name, parsed)

    def _dispatch(self, name: str, a: Any) -> dict[str, Any]:
        reg = self.registry
        if name == "search_nodes":
            return search_nodes(reg, a.words, a.produces, a.consumes)
        if name == "get_node":
            return get_node(reg, a.name)
        if name == "search_templates":
            return search_templates(reg, a.words, a.task)
        if name == "get_template":
            return get_template(reg, a.id)
        if name == "list_models":
            return list_models(a.kind)
        if name == "list_inputs":
            return list_inputs()
        return validate_workflow(reg, a.workflow_text)


def result_text(result: dict[str, Any]) -> str:
    """A tool result as the model reads it (compact JSON)."""
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


def summarize(name: str, result: dict[str, Any]) -> str:
    """One line for the trace saying what a tool call gave back."""
    if "error" in result:
        return f"error {result['error'].get('type')}: {result['error'].get('message')}"
    if name == "search_nodes":
        found = [n["name"] for n in result["nodes"]]
        return f"{len(found)} nodes: {', '.join(found[:6])}" + (" …" if len(found) > 6 else "")
    if name == "get_node":
        return f"schema of {result['name']} ({len(result['schema'])} chars)"
    if name == "search_templates":
        return f"{len(result['templates'])} templates: {', '.join(t['id'] for t in result['templates'][:4])}"
    if name == "get_template":
        return f"template {result['id']} ({result['workflow_text'].count(chr(10))} lines)"
    if name == "list_models":
        if "kinds" in result:
            return "counts: " + ", ".join(f"{k}={v}" for k, v in result["kinds"].items() if v)
        return f"{result['count']} {result['kind']}: {', '.join(result['files'][:4])}"
    if name == "list_inputs":
        return f"{result['count']} input files: {', '.join(result['files'][:4])}"
    if result.get("valid"):
        return f"valid ({result.get('nodes')} nodes)"
    kinds = sorted({e.get("type", "?") for e in result.get("errors", [])})
    return f"{result.get('error_count', 0)} errors: {', '.join(kinds)}"
