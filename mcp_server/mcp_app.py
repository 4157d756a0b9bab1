"""The MCP face: tools, resources and prompts over NodeWeaverService (stdio and streamable HTTP)."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import mimetypes
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, Field

from engine.jobs import WorkflowInvalid
from mcp_server.service import NodeWeaverService, ServiceError, WorkflowTool

INSTRUCTIONS = """NodeWeaver plans, validates and runs ComfyUI workflows. Typical use: plan_workflow with the
user's request (Chinese or English) → inspect or edit the workflow → run_workflow → images come back as
image content. Workflows are ComfyUI API-format JSON (or NodeWeaver's text form). search_nodes and get_node
describe the node catalog; validation errors name the node, input and problem so you can fix them."""

PARAM_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


def _error_result(exc: Exception) -> CallToolResult:
    if isinstance(exc, WorkflowInvalid):
        data = {"error": "invalid_workflow", "errors": [e.model_dump() for e in exc.result.errors]}
        text = "The workflow does not validate:\n" + "\n".join(f"- {e}" for e in exc.result.errors)
    elif isinstance(exc, ServiceError):
        data = {"error": exc.kind, "message": str(exc), "details": exc.details}
        text = f"{exc.kind}: {exc}"
        if isinstance(exc.details, list):
            text += "\n" + "\n".join(f"- {d.get('message', d)}" for d in exc.details if isinstance(d, dict))
    else:
        data = {"error": type(exc).__name__, "message": str(exc)}
        text = f"{type(exc).__name__}: {exc}"
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data, is_error=True)


def _job_result(service: NodeWeaverService, job) -> CallToolResult:
    summary = service.job_summary(job)
    lines = [f"job {job.id}: {job.status}"]
    if job.error:
        lines.append(f"error at node {job.error.get('node_id')} ({job.error.get('node_type')}): "
                     f"{job.error.get('exception_type')}: {job.error.get('exception_message')}")
    content: list[Any] = []
    for node_id, ui in job.outputs.items():
        for text in ui.get("text", []):
            lines.append(f"output {node_id}: {text}")
    for path in service.output_files(job):
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if mime.startswith("image/"):
            content.append(ImageContent(type="image", data=base64.b64encode(path.read_bytes()).decode(),
                                        mime_type=mime))
        lines.append(f"file: {path.name}")
    content.insert(0, TextContent(type="text", text="\n".join(lines)))
    return CallToolResult(content=content, structured_content=summary, is_error=job.status != "success")


async def _run_with_progress(service: NodeWeaverService, prompt: Any, ctx: Context | None, timeout: float):
    job = await anyio.to_thread.run_sync(lambda: service.submit(prompt))
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def forward(event) -> None:
        if event.data.get("prompt_id") == job.id:
            loop.call_soon_threadsafe(events.put_nowait, event)

    unsubscribe = service.bus.subscribe(forward)
    total = max(1, len(job.plan.get("order", [])))
    done = 0
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), timeout=0.25)
            except TimeoutError:
                current = await anyio.to_thread.run_sync(lambda: service.get_job(job.id))
                if current.finished or loop.time() > deadline:
                    return current
                continue
            if ctx is None:
                continue
            if event.type == "executing":
                done += 1
                await ctx.report_progress(done, total, f"running node {event.data.get('node')}")
            elif event.type == "execution_cached":
                done += len(event.data.get("nodes", []))
                await ctx.report_progress(done, total, "reusing cached results")
            elif event.type == "progress":
                await ctx.report_progress(done - 1 + event.data["value"] / max(event.data["max"], 1), total,
                                          f"node {event.data.get('node')}: step {event.data['value']}/{event.data['max']}")
    finally:
        unsubscribe()


class QuestionAnswer(BaseModel):
    answer: str = Field(description="Your answer (one of the offered choices, or a file or model name)")


def build_mcp(service: NodeWeaverService) -> MCPServer:
    mcp = MCPServer("NodeWeaver", instructions=INSTRUCTIONS, log_level="WARNING")

    @mcp.tool(description="Plan a workflow from a request in words (Chinese or English). Returns the workflow "
                          "(ComfyUI API JSON and NodeWeaver text form), what it does, and a trace of the planning "
                          "steps. If something essential is missing it asks a question (via elicitation when the "
                          "client supports it, else in the result: call again with `answers`). Set run=true to "
                          "also run it. `provider` picks an LLM planner (default: the offline planner).")
    async def plan_workflow(request: str, run: bool = False, provider: str | None = None,
                            answers: dict[str, str] | None = None, ctx: Context | None = None) -> CallToolResult:
        try:
            result = await anyio.to_thread.run_sync(lambda: service.plan(request, provider=provider,
                                                                         answers=answers))
            if result["status"] == "question" and ctx is not None:
                question = result["question"]
                try:
                    reply = await ctx.elicit(f"{question['text']} Choices: {', '.join(question['choices'])}",
                                             QuestionAnswer)
                    if getattr(reply, "action", "") == "accept" and reply.data:
                        merged = {**(answers or {}), question["slot"]: reply.data.answer}
                        result = await anyio.to_thread.run_sync(lambda: service.plan(request, provider=provider,
                                                                                     answers=merged))
                except Exception:  # the client does not support elicitation: the question stays in the result
                    pass
            if run and result["status"] == "valid":
                job = await _run_with_progress(service, result["workflow"], ctx, 600)
                job_result = _job_result(service, job)
                result["status"] = "ran" if job.status == "success" else "failed"
                result["job"] = service.job_summary(job)
                text = f"{result['summary']}\n\n{result['text']}"
                return CallToolResult(content=[TextContent(type="text", text=text), *job_result.content[1:]],
                                      structured_content=json.loads(json.dumps(result, default=str)),
                                      is_error=job.status != "success")
        except Exception as exc:
            return _error_result(exc)
        if result["status"] == "question":
            text = f"QUESTION: {result['question']['text']} (choices: {', '.join(result['question']['choices'])})"
        elif result["status"] == "valid":
            text = f"{result['summary']}\n\n{result['text']}"
        else:
            text = f"could not plan: {result['summary']}"
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=json.loads(json.dumps(result, default=str)),
                              is_error=result["status"] not in ("valid", "question"))

    @mcp.tool(description="Validate a workflow (ComfyUI API JSON, ComfyUI UI JSON or NodeWeaver text form). "
                          "Returns every problem at once: type (ComfyUI's names), node id, class, input, message.")
    async def validate_workflow(workflow: dict[str, Any] | str) -> CallToolResult:
        try:
            result = await anyio.to_thread.run_sync(lambda: service.validate(workflow))
        except Exception as exc:
            return _error_result(exc)
        text = "valid" if result["valid"] else "invalid:\n" + "\n".join(
            f"- [{e['type']}] node {e.get('node_id')} {e.get('input_name') or ''}: {e['message']}" for e in result["errors"])
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result)

    @mcp.tool(description="Run a workflow and wait for it (progress notifications while it runs). Returns the "
                          "outputs: texts, and images as image content.")
    async def run_workflow(workflow: dict[str, Any] | str, timeout_s: float = 600,
                           ctx: Context | None = None) -> CallToolResult:
        try:
            job = await _run_with_progress(service, workflow, ctx, timeout_s)
        except Exception as exc:
            return _error_result(exc)
        return _job_result(service, job)

    @mcp.tool(description="Search the node catalog by words (English or Chinese) and/or socket types "
                          "produced or consumed (IMAGE, LATENT, STRING, CONDITIONING ...).")
    async def search_nodes(query: str = "", produces: str | None = None, consumes: str | None = None,
                           limit: int = 10) -> CallToolResult:
        hits = service.search_nodes(query, produces=produces, consumes=consumes, limit=limit)
        text = "\n".join(f"{h['name']} [{h['category']}]: {', '.join(h['inputs'])} -> {', '.join(h['outputs'])}"
                         for h in hits) or "no match"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"results": hits})

    @mcp.tool(description="One node's full schema: inputs with types, defaults, ranges and choices; outputs.")
    async def get_node(name: str) -> CallToolResult:
        try:
            node = service.get_node(name)
        except Exception as exc:
            return _error_result(exc)
        return CallToolResult(content=[TextContent(type="text", text=node["schema"])], structured_content=node)

    @mcp.tool(description="A job's status and outputs.")
    async def get_job(job_id: str) -> CallToolResult:
        try:
            return _job_result(service, service.get_job(job_id))
        except Exception as exc:
            return _error_result(exc)

    @mcp.tool(description="Recent jobs, newest first; status filters (queued, running, success, error ...).")
    async def list_jobs(status: str | None = None, limit: int = 20) -> CallToolResult:
        jobs = [service.job_summary(j) for j in service.list_jobs(status, limit)]
        text = "\n".join(f"{j['id']} {j['status']}" for j in jobs) or "no jobs"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"jobs": jobs})

    @mcp.tool(description="Cancel a queued job, or interrupt it if it is running.")
    async def cancel_job(job_id: str) -> CallToolResult:
        try:
            done = service.cancel_job(job_id)
        except Exception as exc:
            return _error_result(exc)
        return CallToolResult(content=[TextContent(type="text", text="cancelled" if done else "already finished")],
                              structured_content={"cancelled": done})

    @mcp.resource("nodeweaver://catalog", name="node catalog", mime_type="application/json",
                  description="Every node as ComfyUI /object_info JSON")
    def catalog() -> str:
        return json.dumps(service.object_info())

    @mcp.resource("nodeweaver://templates", name="workflow templates", mime_type="application/json",
                  description="Example workflows that ship with NodeWeaver (API JSON)")
    def templates() -> str:
        return json.dumps(service.templates(), ensure_ascii=False)

    @mcp.resource("nodeweaver://outputs/{job_id}", name="job outputs", mime_type="application/json")
    def outputs(job_id: str) -> str:
        return json.dumps(service.job_summary(service.get_job(job_id)), ensure_ascii=False)

    @mcp.prompt(description="Ask NodeWeaver for a text-to-image workflow")
    def text_to_image(subject: str, size: str = "768x512") -> str:
        return f"Use plan_workflow to make a {size} image of {subject}, then run_workflow and show me the image."

    @mcp.prompt(description="Fix a workflow that does not validate")
    def repair_workflow(workflow: str) -> str:
        return ("Call validate_workflow on this workflow, fix every error it reports (use get_node for the exact "
                f"inputs), validate again, then run it:\n{workflow}")

    for tool in service.list_tools():
        register_workflow_tool(mcp, service, tool)
    return mcp


def register_workflow_tool(mcp: MCPServer, service: NodeWeaverService, tool: WorkflowTool) -> None:
    """Publish a saved workflow as its own MCP tool with a typed signature."""

    async def call(**kwargs: Any) -> CallToolResult:
        try:
            job = await _run_with_progress(service, service.tool_workflow(tool.name, kwargs), None, 600)
        except Exception as exc:
            return _error_result(exc)
        return _job_result(service, job)

    params = []
    for name, param in tool.params.items():
        kind = PARAM_TYPES.get(param.type, str)
        default = param.default if param.default is not None else inspect.Parameter.empty
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=kind if default is inspect.Parameter.empty else kind | None))
    call.__signature__ = inspect.Signature(params, return_annotation=CallToolResult)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": CallToolResult}
    call.__name__ = tool.name
    described = "; ".join(f"{n}: {p.description or p.input}" for n, p in tool.params.items())
    mcp.add_tool(call, name=tool.name, description=f"{tool.description} (parameters: {described})")
