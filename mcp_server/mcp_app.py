"""The MCP face: tools, resources and prompts over NodeWeaverService (stdio and streamable HTTP).

Every tool declares its arguments (described, bounded, and no others accepted), the shape of its result and its
behaviour hints, so a client can call it right the first time; every failure comes back as a structured result
({"error": kind, "message", "details"}), never as a bare line of text.
"""

import asyncio
import base64
import inspect
import json
import logging
import mimetypes
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.mcpserver.utilities.context_injection import find_context_parameter
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from mcp_types import Tool as ListedTool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent import planner_provider
from agent.planner import PlanResult
from compiler.errors import WorkflowError
from engine.events import ExecutionEvent
from engine.jobs import Job, JobStatus, WorkflowInvalid
from mcp_server.service import NodeWeaverService, WorkflowTool
from mcp_server.templates_api import register_tools as register_template_tools
from nodes.search import SearchHit
from nodeweaver import __version__
from runtime.errors import BadRequest, NodeWeaverError, NotFound

log = logging.getLogger(__name__)

INSTRUCTIONS = """NodeWeaver plans, validates and runs ComfyUI workflows. Typical use: plan_workflow with the
user's request (Chinese or English) → inspect or edit the workflow → run_workflow → images come back as
image content. Workflows are ComfyUI API-format JSON (or NodeWeaver's text form). search_nodes and get_node
describe the node catalog; validation errors name the node, input and problem so you can fix them."""

PARAM_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}
BOUND_KEYS = ("ge", "gt", "le", "lt", "min_length", "max_length", "expected")

# ---- what tools do (hints for the client's confirmation UI) ----------------------------------------------
LOOKUP = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
RUNS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
CANCELS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)

# ---- argument types, described and bounded ---------------------------------------------------------------
WorkflowArg = Annotated[dict[str, Any] | str, Field(
    description="The workflow: ComfyUI API JSON ({node_id: {class_type, inputs}}), ComfyUI UI JSON, or "
                "NodeWeaver's text form; an object or a string")]
JobIdArg = Annotated[str, Field(min_length=1, max_length=128, description="A job id, as run_workflow or "
                                                                           "list_jobs returned it")]


# ---- result shapes (the tools' output schemas) ------------------------------------------------------------
class JobSummary(BaseModel):
    id: str = Field(description="The job id (ComfyUI's prompt_id)")
    status: str = Field(description="queued, running, success, error, interrupted, cancelled or failed_by_restart")
    outputs: dict[str, Any] = Field(description="UI outputs by node id: texts, images, files (ComfyUI's shape)")
    error: dict[str, Any] | None = Field(description="Where and why the job failed (node_id, node_type, "
                                                     "exception_type, exception_message); null when it did not")
    executed: int = Field(description="How many nodes ran")
    cached: int = Field(description="How many nodes were reused from the cache")
    seconds: float | None = Field(description="How long it ran; null before it starts")


class PlanOutput(PlanResult):
    job: JobSummary | None = Field(None, description="The run, when plan_workflow was called with run=true")


class ValidationOutput(BaseModel):
    valid: bool = Field(description="Whether the workflow can run as it is")
    errors: list[WorkflowError] = Field(description="Every problem: type (ComfyUI's names), node, input, message")
    warnings: list[WorkflowError] = Field(description="Things that run but may not be what was meant")
    outputs: list[str] = Field(description="Ids of the output nodes")
    node_errors: dict[str, Any] = Field(description="ComfyUI's node_errors shape, by node id")
    order: list[str] | None = Field(description="Execution order when valid")


class SearchOutput(BaseModel):
    results: list[SearchHit] = Field(description="Matching nodes, best first")


class NodeOutput(BaseModel):
    name: str = Field(description="The node's class_type")
    schema_: str = Field(alias="schema", description="Readable schema: inputs with types, defaults, ranges")
    object_info: dict[str, Any] = Field(description="The node as ComfyUI /object_info describes it")


class JobListOutput(BaseModel):
    jobs: list[JobSummary] = Field(description="Jobs, newest first")


class CancelOutput(BaseModel):
    cancelled: bool = Field(description="True when the job was cancelled or interrupted; false when it had "
                                        "already finished")


class QuestionAnswer(BaseModel):
    answer: str = Field(description="Your answer (one of the offered choices, or a file or model name)")


# ---- the server ----------------------------------------------------------------------------------------
class NodeWeaverMCP(MCPServer):
    """An MCPServer whose tools accept only the arguments they declare and answer every failure, argument
    errors included, as a structured result. The SDK on its own ignores unknown arguments and reports a bad
    one (or a crash) as a single line of text the client cannot act on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._checkers: dict[str, FuncMetadata] = {}
        self.workflow_tools: set[str] = set()  # saved workflows published as tools (replaceable)
        self._input_schemas: dict[str, dict[str, Any]] = {}
        super().__init__(*args, **kwargs)

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, *args: Any, **kwargs: Any) -> None:
        tool_name = name or fn.__name__
        if tool_name in self._checkers:
            raise ValueError(f"a tool named {tool_name!r} is already registered")
        super().add_tool(fn, tool_name, *args, **kwargs)
        context = find_context_parameter(fn)
        loose = func_metadata(fn, skip_names=[context] if context else [], structured_output=False).arg_model
        strict = type(loose.__name__, (loose,), {"model_config": ConfigDict(extra="forbid",
                                                                             arbitrary_types_allowed=True)})
        self._checkers[tool_name] = FuncMetadata(arg_model=strict)
        self._input_schemas[tool_name] = strict.model_json_schema(by_alias=True)

    def remove_tool(self, name: str) -> None:
        super().remove_tool(name)
        self._checkers.pop(name, None)
        self.workflow_tools.discard(name)
        self._input_schemas.pop(name, None)

    def has_tool(self, name: str) -> bool:
        return name in self._checkers

    async def list_tools(self) -> list[ListedTool]:
        """As the SDK lists them, with input schemas that say no other arguments are accepted."""
        return [t.model_copy(update={"input_schema": self._input_schemas[t.name]}) if t.name in self._input_schemas
                else t for t in await super().list_tools()]

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Context | None = None) -> CallToolResult:  # type: ignore[override]
        checker = self._checkers.get(name)
        if checker is None:
            return _error_result(NotFound(f"no tool named {name!r}", kind="tool_not_found",
                                          details={"tools": sorted(self._checkers)}))
        try:
            checker.validate_arguments(arguments)
        except ValidationError as exc:
            return _error_result(_argument_error(name, exc, checker))
        try:
            return await super().call_tool(name, arguments, context)  # type: ignore[return-value]
        except ToolError as exc:  # the SDK wraps what the tool raised; map the original
            return _error_result(exc.__cause__ if exc.__cause__ is not None else exc)


def _argument_error(tool: str, exc: ValidationError, checker: FuncMetadata) -> BadRequest:
    """Which arguments are wrong and why (with the bound they break), never echoing the values given."""
    declared = sorted(f.alias or n for n, f in checker.arg_model.model_fields.items())
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        problem: dict[str, Any] = {"argument": ".".join(str(part) for part in err["loc"]), "type": err["type"],
                                   "message": err["msg"]}
        if err["type"] == "extra_forbidden":
            problem["message"] = f"{tool} has no argument {err['loc'][0]!r}; it takes {', '.join(declared)}"
        bounds = {k: v for k, v in (err.get("ctx") or {}).items() if k in BOUND_KEYS}
        if bounds:
            problem["bound"] = json.loads(json.dumps(bounds, default=str))
        problems.append(problem)
    text = "; ".join(f"{p['argument']}: {p['message']}" for p in problems)
    return BadRequest(f"invalid arguments for {tool}: {text}", kind="invalid_arguments", details=problems)


def _error_result(exc: BaseException) -> CallToolResult:
    """NodeWeaver's own errors become {"error": kind, "message", "details"}; anything else is a bug: logged
    with its traceback here, and answered without internals."""
    if isinstance(exc, WorkflowInvalid):
        data = {"error": "invalid_workflow", "message": "the workflow does not validate",
                "errors": [e.model_dump() for e in exc.result.errors]}
        text = "The workflow does not validate:\n" + "\n".join(f"- {e}" for e in exc.result.errors)
    elif isinstance(exc, NodeWeaverError):
        data = {"error": exc.kind, "message": str(exc), "details": exc.details}
        text = f"{exc.kind}: {exc}"
        if isinstance(exc.details, list):
            text += "".join(f"\n- {d['argument'] + ': ' if 'argument' in d else ''}{d.get('message', d)}"
                            for d in exc.details if isinstance(d, dict))
    else:
        log.error("an MCP tool failed unexpectedly", exc_info=(type(exc), exc, exc.__traceback__))
        data = {"error": "internal_error", "message": "an unexpected error occurred; the server log has details"}
        text = f"internal_error: {data['message']}"
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=json.loads(json.dumps(data, default=str)), is_error=True)


def _job_result(service: NodeWeaverService, job: Job) -> CallToolResult:
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
    return CallToolResult(content=content, structured_content=json.loads(json.dumps(summary, default=str)),
                          is_error=job.status != "success")


# ---- running with progress --------------------------------------------------------------------------------
class _JobEvents:
    """Engine events for one job, subscribed to BEFORE the job is submitted. A fast job can finish before
    submit returns, and the executor only emits while someone listens, so subscribing after submit loses
    them. Until the job id is known every event is kept; the reader drops other jobs' events."""

    def __init__(self, service: NodeWeaverService, loop: asyncio.AbstractEventLoop) -> None:
        self.job_id: str | None = None
        self.queue: asyncio.Queue[ExecutionEvent] = asyncio.Queue()
        self._loop = loop
        self._closed = False
        self._unsubscribe = service.bus.subscribe(self._on_event)

    def _on_event(self, event: ExecutionEvent) -> None:  # called on the worker thread
        wanted = self.job_id
        if not self._closed and (wanted is None or event.data.get("prompt_id") == wanted):
            self._loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def mine(self, event: ExecutionEvent) -> bool:
        return event.data.get("prompt_id") == self.job_id

    def pending(self) -> list[ExecutionEvent]:
        found = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if self.mine(event):
                found.append(event)
        return found

    def close(self) -> None:
        self._closed = True
        self._unsubscribe()


class _ProgressReporter:
    """Turns engine events into MCP progress notifications: one step per node, fractions within a node."""

    TERMINAL = ("execution_success", "execution_error", "execution_interrupted")

    def __init__(self, ctx: Context | None, total: int) -> None:
        self.ctx = ctx
        self.total = max(1, total)
        self.done = 0

    async def report(self, event: ExecutionEvent) -> None:
        if self.ctx is None:
            return
        data = event.data
        if event.type == "executing" and data.get("node") is not None:
            self.done += 1
            await self.ctx.report_progress(self.done, self.total, f"running node {data.get('node')}")
        elif event.type == "execution_cached" and data.get("nodes"):
            self.done += len(data["nodes"])
            await self.ctx.report_progress(self.done, self.total, "reusing cached results")
        elif event.type == "progress":
            fraction = data.get("value", 0) / max(data.get("max", 1), 1)
            await self.ctx.report_progress(max(0.0, self.done - 1 + fraction), self.total,
                                           f"node {data.get('node')}: step {data.get('value')}/{data.get('max')}")


async def _run_with_progress(service: NodeWeaverService, prompt: Any, ctx: Context | None,
                             timeout: float) -> Job:
    """Submit, report progress until the job finishes (or `timeout` passes), and return the job."""
    loop = asyncio.get_running_loop()
    events = _JobEvents(service, loop)
    try:
        job = await anyio.to_thread.run_sync(lambda: service.submit(prompt))
        events.job_id = job.id
        reporter = _ProgressReporter(ctx, len(job.plan.get("order", [])))
        deadline = loop.time() + timeout
        while True:
            try:
                event: ExecutionEvent | None = await asyncio.wait_for(events.queue.get(), timeout=0.25)
            except TimeoutError:
                event = None
            if event is not None and events.mine(event):
                await reporter.report(event)
            if event is None or event.type in _ProgressReporter.TERMINAL or loop.time() > deadline:
                current = await anyio.to_thread.run_sync(lambda: service.get_job(job.id))
                if current.finished or loop.time() > deadline:
                    for late in events.pending():
                        await reporter.report(late)
                    return current
    finally:
        events.close()


# ---- planning ---------------------------------------------------------------------------------------------
def _client_can_elicit(ctx: Context | None) -> bool:
    if ctx is None:
        return False
    try:
        capabilities = ctx.client_capabilities
    except ValueError:  # called in-process, outside a request: nobody to ask
        return False
    return capabilities is not None and capabilities.elicitation is not None


def _client_model(ctx: Context | None, provider: str | None, workflow: Any) -> Any:
    """The caller's own model as the planner's LLM (MCP sampling), when nothing ranks above it: no provider
    named, none configured on the server, a new plan (edits are offline), and a client that can sample on
    this connection. None otherwise, and then the offline planner serves."""
    if ctx is None or workflow is not None or planner_provider(provider) is not None:
        return None
    try:
        capabilities = ctx.client_capabilities
        session, request_id = ctx.session, ctx.request_id
    except ValueError:  # called in-process, outside a request: nobody to ask
        return None
    if capabilities is None or capabilities.sampling is None:
        return None
    from agent.mcp_sampling import sampling_model  # LangChain loads only when a client can sample

    return sampling_model(session, capabilities, request_id=request_id)


async def _plan_with_questions(service: NodeWeaverService, request: str, provider: str | None,
                               answers: dict[str, str] | None, ctx: Context | None,
                               workflow: Any = None) -> dict[str, Any]:
    """Plan; when the planner asks a question and the client can answer (elicitation), ask and plan again.
    Otherwise the question stays in the result, to be answered with `answers` on the next call."""
    chat_model = _client_model(ctx, provider, workflow)
    result = await anyio.to_thread.run_sync(lambda: service.plan(request, provider=provider, answers=answers,
                                                                 workflow=workflow, chat_model=chat_model))
    if result["status"] != "question" or not _client_can_elicit(ctx):
        return result
    question = result["question"]
    try:
        reply = await ctx.elicit(f"{question['text']} Choices: {', '.join(question['choices'])}",  # type: ignore
                                 QuestionAnswer)
    except (MCPError, ValueError) as exc:  # declined by the client, or an answer of the wrong shape
        log.info("elicitation for %r failed: %s", question.get("slot"), exc)
        return result
    if getattr(reply, "action", "") != "accept" or not getattr(reply, "data", None):
        return result
    merged = {**(answers or {}), question["slot"]: reply.data.answer}
    return await anyio.to_thread.run_sync(lambda: service.plan(request, provider=provider, answers=merged,
                                                               workflow=workflow, chat_model=chat_model))


def _coverage_text(result: dict[str, Any]) -> str:
    """What the plan leaves out and its edits, in words: an agent reading only the text must see them too."""
    lines = []
    for item in result.get("not_covered") or []:
        lines.append(f"NOT COVERED: {item.get('what') or item.get('kind')}: {item.get('reason', '')}"
                     + (f" ({item['suggestion']})" if item.get("suggestion") else ""))
    lines += [f"note: {note}" for note in result.get("notes") or []]
    if result.get("diff"):
        lines.append("changes:\n" + "\n".join(result["diff"]))
    return "\n".join(lines)


def _plan_result(result: dict[str, Any]) -> CallToolResult:
    if result["status"] == "question":
        text = f"QUESTION: {result['question']['text']} (choices: {', '.join(result['question']['choices'])})"
    elif result["status"] in ("valid", "partial"):
        text = f"{result['summary']}\n\n{result['text']}"
    else:
        text = f"could not plan: {result['summary']}"
    if coverage := _coverage_text(result):
        text = f"{text}\n\n{coverage}"
    return CallToolResult(content=[TextContent(type="text", text=text)],
                          structured_content=json.loads(json.dumps(result, default=str)),
                          is_error=result["status"] not in ("valid", "partial", "question"))


async def _plan_and_run(service: NodeWeaverService, result: dict[str, Any], ctx: Context | None) -> CallToolResult:
    job = await _run_with_progress(service, result["workflow"], ctx, 600)
    job_result = _job_result(service, job)
    result["status"] = "ran" if job.status == "success" else "failed"
    result["job"] = service.job_summary(job)
    text = f"{result['summary']}\n\n{result['text']}"
    return CallToolResult(content=[TextContent(type="text", text=text), *job_result.content[1:]],
                          structured_content=json.loads(json.dumps(result, default=str)),
                          is_error=job.status != "success")


def _register_planning_tools(mcp: NodeWeaverMCP, service: NodeWeaverService) -> None:
    max_chars = service.settings.server.max_plan_chars

    @mcp.tool(title="Plan a workflow", annotations=RUNS,
              description="Plan a workflow from a request in words (Chinese or English). Returns the workflow "
                          "(ComfyUI API JSON and NodeWeaver text form), what it does, and a trace of the planning "
                          "steps. If something essential is missing it asks a question (via elicitation when the "
                          "client supports it, else in the result: call again with `answers`). Set run=true to "
                          "also run it. `provider` picks an LLM planner; without one the server's configured "
                          "provider plans, else your own model through MCP sampling when your client offers it, "
                          "else the offline planner (`planner` in the result says which). Pass "
                          "`workflow` to change an existing workflow by words (the result lists the changes in "
                          "`diff`). Status `partial` means the workflow is valid but leaves parts of the request "
                          "out: they are listed in `not_covered` with the reason and what would provide them.")
    async def plan_workflow(
        request: Annotated[str, Field(min_length=1, max_length=max_chars,
                                      description="What the workflow should do, in words (Chinese or English)")],
        run: Annotated[bool, Field(description="Also run the planned workflow and return its outputs")] = False,
        provider: Annotated[str | None, Field(max_length=64, description="An LLM provider configured in "
                                              "NodeWeaver's settings; omit for the server's default")] = None,
        answers: Annotated[dict[str, str] | None, Field(description="Answers to questions from an earlier "
                                                        "call, by the question's slot name")] = None,
        workflow: Annotated[dict[str, Any] | str | None, Field(description="A workflow to change as the request "
                                                               "says (API JSON, UI JSON or text form), instead "
                                                               "of planning a new one")] = None,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, PlanOutput]:
        result = await _plan_with_questions(service, request, provider, answers, ctx, workflow)
        if run and result["status"] in ("valid", "partial"):
            return await _plan_and_run(service, result, ctx)
        return _plan_result(result)

    @mcp.tool(title="Validate a workflow", annotations=LOOKUP,
              description="Validate a workflow (ComfyUI API JSON, ComfyUI UI JSON or NodeWeaver text form). "
                          "Returns every problem at once: type (ComfyUI's names), node id, class, input, message.")
    async def validate_workflow(workflow: WorkflowArg) -> Annotated[CallToolResult, ValidationOutput]:
        result = await anyio.to_thread.run_sync(lambda: service.validate(workflow))
        text = "valid" if result["valid"] else "invalid:\n" + "\n".join(
            f"- [{e['type']}] node {e.get('node_id')} {e.get('input_name') or ''}: {e['message']}"
            for e in result["errors"])
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=json.loads(json.dumps(result, default=str)))


# ---- jobs -------------------------------------------------------------------------------------------------
def _register_job_tools(mcp: NodeWeaverMCP, service: NodeWeaverService) -> None:
    @mcp.tool(title="Run a workflow", annotations=RUNS,
              description="Run a workflow and wait for it (progress notifications while it runs). Returns the "
                          "outputs: texts, and images as image content.")
    async def run_workflow(
        workflow: WorkflowArg,
        timeout_s: Annotated[float, Field(gt=0, le=3600, description="Seconds to wait for the job; it keeps "
                                          "running after that (follow it with get_job)")] = 600,
        ctx: Context | None = None,
    ) -> Annotated[CallToolResult, JobSummary]:
        return _job_result(service, await _run_with_progress(service, workflow, ctx, timeout_s))

    @mcp.tool(title="Get a job", annotations=LOOKUP, description="A job's status and outputs.")
    async def get_job(job_id: JobIdArg) -> Annotated[CallToolResult, JobSummary]:
        return _job_result(service, await anyio.to_thread.run_sync(lambda: service.get_job(job_id)))

    @mcp.tool(title="List jobs", annotations=LOOKUP,
              description="Recent jobs, newest first; status filters (queued, running, success, error ...).")
    async def list_jobs(
        status: Annotated[JobStatus | None, Field(description="Only jobs in this status")] = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="How many jobs at most")] = 20,
    ) -> Annotated[CallToolResult, JobListOutput]:
        found = await anyio.to_thread.run_sync(lambda: service.list_jobs(status, limit))
        jobs = [service.job_summary(j) for j in found]
        text = "\n".join(f"{j['id']} {j['status']}" for j in jobs) or "no jobs"
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content=json.loads(json.dumps({"jobs": jobs}, default=str)))

    @mcp.tool(title="Cancel a job", annotations=CANCELS,
              description="Cancel a queued job, or interrupt it if it is running.")
    async def cancel_job(job_id: JobIdArg) -> Annotated[CallToolResult, CancelOutput]:
        done = await anyio.to_thread.run_sync(lambda: service.cancel_job(job_id))
        return CallToolResult(content=[TextContent(type="text", text="cancelled" if done else "already finished")],
                              structured_content={"cancelled": done})


# ---- the node catalog -------------------------------------------------------------------------------------
def _register_catalog_tools(mcp: NodeWeaverMCP, service: NodeWeaverService) -> None:
    socket_type = Field(max_length=64, description="A socket type, e.g. IMAGE, LATENT, STRING, CONDITIONING")

    @mcp.tool(title="Search nodes", annotations=LOOKUP,
              description="Search the node catalog by words (English or Chinese) and/or socket types "
                          "produced or consumed (IMAGE, LATENT, STRING, CONDITIONING ...).")
    async def search_nodes(
        query: Annotated[str, Field(max_length=500, description="Words describing the node")] = "",
        produces: Annotated[str | None, socket_type] = None,
        consumes: Annotated[str | None, socket_type] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="How many nodes at most")] = 10,
    ) -> Annotated[CallToolResult, SearchOutput]:
        hits = service.search_nodes(query, produces=produces, consumes=consumes, limit=limit)
        text = "\n".join(f"{h['name']} [{h['category']}]: {', '.join(h['inputs'])} -> {', '.join(h['outputs'])}"
                         for h in hits) or "no match"
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content={"results": hits})

    @mcp.tool(title="Describe a node", annotations=LOOKUP,
              description="One node's full schema: inputs with types, defaults, ranges and choices; outputs.")
    async def get_node(
        name: Annotated[str, Field(min_length=1, max_length=200, description="The node's class_type, e.g. "
                                                                             "KSampler")],
    ) -> Annotated[CallToolResult, NodeOutput]:
        node = service.get_node(name)
        return CallToolResult(content=[TextContent(type="text", text=node["schema"])],
                              structured_content=json.loads(json.dumps(node, default=str)))


# ---- remote ComfyUI servers -------------------------------------------------------------------------------
class ComfyUIServerStatus(BaseModel):
    url: str = Field(description="The server's URL")
    ok: bool = Field(description="Whether its catalog could be read")
    nodes: int = Field(description="How many node classes it has")
    error: str | None = Field(description="Why it could not be read; null when it could")


class RefreshOutput(BaseModel):
    servers: list[ComfyUIServerStatus] = Field(description="Each configured ComfyUI server, as just read")


def _register_comfyui_tools(mcp: NodeWeaverMCP, service: NodeWeaverService) -> None:
    @mcp.tool(title="Refresh ComfyUI servers", annotations=ToolAnnotations(
                  read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=True),
              description="Read every configured ComfyUI server's node catalog and installed models again (after "
                          "installing nodes or models there). Returns each server's status.")
    async def refresh_comfyui() -> Annotated[CallToolResult, RefreshOutput]:
        result = await anyio.to_thread.run_sync(service.refresh_comfyui)
        text = "\n".join(f"{s['url']}: " + (f"{s['nodes']} nodes" if s["ok"] else f"unreachable ({s['error']})")
                         for s in result["servers"])
        return CallToolResult(content=[TextContent(type="text", text=text or "no servers")],
                              structured_content=json.loads(json.dumps(result, default=str)))


# ---- resources and prompts --------------------------------------------------------------------------------
def _register_resources(mcp: NodeWeaverMCP, service: NodeWeaverService) -> None:
    @mcp.resource("nodeweaver://catalog", name="node catalog", mime_type="application/json",
                  description="Every node as ComfyUI /object_info JSON")
    def catalog() -> str:
        return json.dumps(service.object_info())

    @mcp.resource("nodeweaver://templates", name="workflow templates", mime_type="application/json",
                  description="Example workflows that ship with NodeWeaver (API JSON)")
    def templates() -> str:
        return json.dumps(service.templates(), ensure_ascii=False)

    @mcp.resource("nodeweaver://outputs/{job_id}", name="job outputs", mime_type="application/json",
                  description="A job's status and outputs")
    def outputs(job_id: str) -> str:
        try:
            job = service.get_job(job_id)
        except NodeWeaverError as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return json.dumps(service.job_summary(job), ensure_ascii=False, default=str)


def _register_prompts(mcp: NodeWeaverMCP) -> None:
    @mcp.prompt(description="Ask NodeWeaver for a text-to-image workflow")
    def text_to_image(subject: str, size: str = "768x512") -> str:
        return f"Use plan_workflow to make a {size} image of {subject}, then run_workflow and show me the image."

    @mcp.prompt(description="Fix a workflow that does not validate")
    def repair_workflow(workflow: str) -> str:
        return ("Call validate_workflow on this workflow, fix every error it reports (use get_node for the exact "
                f"inputs), validate again, then run it:\n{workflow}")


def build_mcp(service: NodeWeaverService) -> NodeWeaverMCP:
    """The MCP server: built-in tools, resources, prompts, and every saved workflow as its own tool."""
    mcp = NodeWeaverMCP("NodeWeaver", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    _register_planning_tools(mcp, service)
    _register_job_tools(mcp, service)
    _register_catalog_tools(mcp, service)
    _register_comfyui_tools(mcp, service)
    _register_resources(mcp, service)
    _register_prompts(mcp)
    register_template_tools(mcp, lambda: service.registry)
    for tool in service.list_tools():
        register_workflow_tool(mcp, service, tool)
    return mcp


def register_workflow_tool(mcp: NodeWeaverMCP, service: NodeWeaverService, tool: WorkflowTool) -> None:
    """Publish a saved workflow as its own MCP tool with a typed, described signature. Saving it again
    replaces the earlier one; a name a built-in tool has is left to the built-in."""
    if mcp.has_tool(tool.name):
        if tool.name not in mcp.workflow_tools:
            log.warning("workflow tool %r is not published over MCP: a built-in tool has that name", tool.name)
            return
        mcp.remove_tool(tool.name)

    async def call(**kwargs: Any) -> CallToolResult:
        job = await _run_with_progress(service, service.tool_workflow(tool.name, kwargs), None, 600)
        return _job_result(service, job)

    params = []
    for name, param in tool.params.items():
        kind = PARAM_TYPES.get(param.type, str)
        default = param.default if param.default is not None else inspect.Parameter.empty
        described = Annotated[kind if default is inspect.Parameter.empty else kind | None,  # type: ignore
                              Field(description=param.description or f"sets {param.input} of node {param.node}")]
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=described))
    returns = Annotated[CallToolResult, JobSummary]
    call.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    call.__name__ = tool.name
    summary = "; ".join(f"{n}: {p.description or p.input}" for n, p in tool.params.items())
    mcp.add_tool(call, name=tool.name, title=tool.name.replace("_", " "), annotations=RUNS,
                 description=f"{tool.description} (parameters: {summary})")
    mcp.workflow_tools.add(tool.name)
