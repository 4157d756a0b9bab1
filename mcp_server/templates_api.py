"""ComfyUI's official templates over the network: HTTP routes (`router`) and MCP tools (`register_tools`).

Both are thin faces over agent.templates. Failures answer in NodeWeaver's one structured shape
({"error": {type, message, details}} over HTTP, {"error": kind, "message", "details"} over MCP), whatever app
or server they are mounted on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from agent.templates import TASKS, TemplateInfo, load_library
from nodes.registry import NodeRegistry, default_registry
from runtime.errors import NodeWeaverError

MAX_LIMIT = 100
LOOKUP = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
Form = Literal["api", "text", "ui"]
TaskName = Literal[TASKS]  # type: ignore[valid-type]


class TemplateSummary(BaseModel):
    id: str = Field(description="The template id (get_template takes it)")
    title: str
    title_zh: str = Field(description="The Chinese title, when the index has one")
    task: str = Field(description="Its primary task (t2i, i2v, inpaint, upscale …)")
    tasks: list[str] = Field(description="Every task it does")
    category: str
    open_source: bool | None = Field(description="False for templates that call paid API nodes")
    models: list[str] = Field(description="Model files it needs")
    inputs: list[str] = Field(description="Input files it loads")


class TemplateSearchOutput(BaseModel):
    results: list[TemplateSummary] = Field(description="Matching templates, best first")


class TemplateOutput(BaseModel):
    template: TemplateInfo = Field(description="What it does, the models it needs (with download URLs) and "
                                               "where its prompt, size, seed … live (slots)")
    form: Form = Field(description="The workflow's form")
    workflow: dict[str, Any] | str = Field(description="The workflow: API JSON, text form, or ComfyUI UI JSON")


def _template(template_id: str, to: Form, registry: NodeRegistry) -> dict[str, Any]:
    library = load_library(registry)
    info = library.get(template_id)
    workflow = library.workflow(template_id, to=to, registry=registry)
    return {"template": info.model_dump(exclude={"search_text"}), "form": to, "workflow": workflow}


def _search(query: str, task: str | None, limit: int, registry: NodeRegistry) -> list[dict[str, Any]]:
    return [t.summary() for t in load_library(registry).search(query, task=task, limit=limit)]


# ---- HTTP ---------------------------------------------------------------------------------------------------
router = APIRouter(tags=["templates"])


def _app_registry(request: Request) -> NodeRegistry:
    """The app's service registry when it has one (its catalog names more widgets), else the built-in one."""
    service = getattr(request.app.state, "service", None)
    return getattr(service, "registry", None) or default_registry()


def _refusal(exc: NodeWeaverError) -> JSONResponse:
    return JSONResponse({"error": json.loads(json.dumps(exc.to_dict(), default=str))}, status_code=exc.status)


@router.get("/api/templates", summary="Search ComfyUI's official workflow templates")
def search_templates_route(
    request: Request,
    q: Annotated[str, Query(max_length=500, description="Words, English or Chinese")] = "",
    task: Annotated[TaskName | None, Query(description="Only templates doing this task")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
) -> Any:
    try:
        return {"templates": _search(q, task, limit, _app_registry(request))}
    except NodeWeaverError as exc:
        return _refusal(exc)


@router.get("/api/templates/{template_id}", summary="One template: its description and its workflow")
def get_template_route(
    request: Request,
    template_id: str,
    to: Annotated[Form, Query(description="Workflow form: api (default), text or ui")] = "api",
) -> Any:
    try:
        return _template(template_id, to, _app_registry(request))
    except NodeWeaverError as exc:
        return _refusal(exc)


# ---- MCP ----------------------------------------------------------------------------------------------------
def _error(exc: NodeWeaverError) -> CallToolResult:
    data = {"error": exc.kind, "message": str(exc), "details": exc.details}
    return CallToolResult(content=[TextContent(type="text", text=f"{exc.kind}: {exc}")],
                          structured_content=json.loads(json.dumps(data, default=str)), is_error=True)


def register_tools(server: MCPServer, registry: NodeRegistry | Callable[[], NodeRegistry] | None = None) -> None:
    """Add search_templates and get_template to `server`; `registry` (or a function giving it) names widgets
    and converts workflows, the built-in registry by default."""

    def current_registry() -> NodeRegistry:
        found = registry() if callable(registry) else registry
        return found if found is not None else default_registry()

    @server.tool(title="Search workflow templates", annotations=LOOKUP,
                 description="Search ComfyUI's official workflow templates by words (English or Chinese) and/or "
                             "task. Each result names its task, the models it needs and the files it loads; "
                             "get_template gives its workflow.")
    async def search_templates(
        query: Annotated[str, Field(max_length=500, description="Words describing the workflow, e.g. "
                                                                "'wan image to video' or '图生视频'")] = "",
        task: Annotated[TaskName | None, Field(description="Only templates doing this task")] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="How many templates at most")] = 10,
    ) -> Annotated[CallToolResult, TemplateSearchOutput]:
        try:
            found = await anyio.to_thread.run_sync(lambda: _search(query, task, limit, current_registry()))
        except NodeWeaverError as exc:
            return _error(exc)
        text = "\n".join(f"{t['id']} [{t['task']}]: {t['title']}" for t in found) or "no template matches"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"results": found})

    @server.tool(title="Get a workflow template", annotations=LOOKUP,
                 description="One official template: what it does, the model files it needs (with download "
                             "URLs), where its prompt/size/seed live (slots), and its workflow as API JSON, "
                             "text form or ComfyUI UI JSON.")
    async def get_template(
        id: Annotated[str, Field(min_length=1, max_length=200, description="The template id, as "
                                                                           "search_templates lists it")],
        to: Annotated[Form, Field(description="Workflow form: api (default), text or ui")] = "api",
    ) -> Annotated[CallToolResult, TemplateOutput]:
        try:
            data = await anyio.to_thread.run_sync(lambda: _template(id, to, current_registry()))
        except NodeWeaverError as exc:
            return _error(exc)
        info = data["template"]
        text = f"{info['id']}: {info['title']} ({info['task']}); models: " \
               + (", ".join(m["name"] for m in info["models"]) or "none")
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=json.loads(json.dumps(data, default=str)))
