"""NodeWeaver's one service API. The MCP tools and the HTTP endpoints are thin adapters over this class;
no logic lives only in an adapter."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent import planner_provider
from agent.planner import PlanResult, plan
from compiler import WorkflowFormatError, load_workflow, validate
from engine import EventBus, Executor
from engine.cache import OutputCache
from engine.jobs import FINISHED, Job, JobNotFound, JobQueue, WorkflowInvalid
from engine.routing import RemoteServer, RoutingBackend, connect_servers
from nodes.registry import NodeRegistry, default_registry
from nodeweaver import __version__
from runtime import folders
from runtime.errors import NodeWeaverError, NotFound
from runtime.settings import Settings, current

TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
# NodeWeaver's own MCP tools: a saved workflow may not take one of these names.
RESERVED_TOOL_NAMES = frozenset({"plan_workflow", "validate_workflow", "run_workflow", "search_nodes", "get_node",
                                 "get_job", "list_jobs", "cancel_job", "search_templates", "get_template",
                                 "refresh_comfyui"})

HISTORY_LIMIT = 10_000  # ComfyUI keeps at most this many history items
MAX_NAME_BYTES = 200  # an upload name plus " (NNN)" stays under the 255-byte limit of common file systems
_SQL_CHUNK = 500  # ids per DELETE: far below SQLite's limit on bound variables

_STRUCTURE = b'"[]{}'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_SCAN_CHUNK = 1 << 23  # bytes of structure scanned at a time: bounded memory for 100 MiB bodies
_CONTAINERS = (dict, list, tuple)


def json_text_too_deep(text: str | bytes, limit: int) -> bool:
    """Whether JSON text nests arrays/objects deeper than `limit`, found without recursion or parsing.

    Escapes are dropped, then only quotes and brackets kept; a bracket after an odd number of quotes is
    inside a string and does not count. Meant to run before `json.loads` and the recursive code behind it
    ever see the text; invalid JSON gives a best-effort answer."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= limit:  # cannot be deeper than the number of openers
        return False
    import numpy as np

    structure = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    steps = np.zeros(256, np.int8)
    steps[[ord("["), ord("{")]], steps[[ord("]"), ord("}")]] = 1, -1
    depth, in_string = 0, 0
    for at in range(0, len(structure), _SCAN_CHUNK):
        chunk = np.frombuffer(structure, np.uint8, min(_SCAN_CHUNK, len(structure) - at), at)
        inside = np.bitwise_xor.accumulate((chunk == ord('"')).view(np.uint8)) ^ in_string
        step = steps[chunk]
        step[inside == 1] = 0
        depths = np.cumsum(step, dtype=np.int32) + depth
        if int(depths.max()) > limit:
            return True
        depth, in_string = int(depths[-1]), int(inside[-1])
    return False


def object_too_deep(value: Any, limit: int) -> bool:
    """Whether parsed JSON (dicts and lists) nests deeper than `limit`; iterative, level by level, for
    callers (MCP, CLI) that hand over objects, not text."""
    level, depth = [value] if isinstance(value, _CONTAINERS) else [], 1
    while level:
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            below += [c for c in (item.values() if isinstance(item, dict) else item) if isinstance(c, _CONTAINERS)]
        level, depth = below, depth + 1
    return False


def is_unicode_text(text: str) -> bool:
    """False for strings holding lone surrogates, which no UTF-8 file, database or reply can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def _depth_guard() -> Iterator[None]:
    """Recursive readers (JSON, the text form's parser, the validator) hitting Python's recursion limit
    mean the input nests too deeply: answer that, not a crash."""
    try:
        yield
    except RecursionError:
        raise ServiceError("the workflow is nested too deeply to read", kind="too_deep") from None


class ToolParam(BaseModel):
    """One declared parameter of a saved workflow: which node input it sets."""

    node: str
    input: str
    type: str = "string"  # string | integer | number | boolean
    description: str = ""
    default: Any = None


class WorkflowTool(BaseModel):
    name: str
    description: str
    workflow: dict[str, Any]
    params: dict[str, ToolParam] = Field(default_factory=dict)


class ServiceError(NodeWeaverError, ValueError):
    """A request the service cannot honour, with a status code for HTTP and a type for MCP."""

    kind = "bad_request"


class NodeWeaverService:
    def __init__(self, registry: NodeRegistry | None = None, *, start_worker: bool = True,
                 settings: Settings | None = None, remotes: list[RemoteServer] | None = None) -> None:
        """`remotes`: ComfyUI servers already connected (the CLI reads their catalogs first); when none are
        given and `[comfyui] urls` are set, they are connected here. A server that is down is reported by
        `comfyui_status`, never fatal."""
        self.registry = registry or default_registry()
        self.settings = settings or current()
        self.bus = EventBus()
        engine = self.settings.engine
        comfyui = self.settings.comfyui
        if remotes is None and comfyui.urls:
            remotes = connect_servers(comfyui, self.registry)
        # with remote servers the router owns the job's bus and forwards the local executor's events to it
        local_bus = EventBus() if remotes else self.bus
        if engine.backend == "ray":  # jobs run on Ray worker actors; the queue and the API stay here
            from engine.ray_backend import RayBackend

            self.executor: Executor | RayBackend = RayBackend(
                engine.ray_address, settings=self.settings, workers=engine.ray_workers, bus=local_bus,
                gpus_per_worker=engine.ray_gpus_per_worker, retries=engine.ray_retries)
        else:
            self.executor = Executor(self.registry, bus=local_bus, node_timeout=engine.node_timeout,
                                     cache=_output_cache(self.settings))
        self.router = RoutingBackend(self.executor, remotes, self.registry, bus=self.bus,
                                     prefer=comfyui.prefer) if remotes else None
        self.queue = JobQueue(self.registry, self.settings.data_dir / "jobs.sqlite3",
                              executor=self.router or self.executor, node_timeout=self.settings.engine.node_timeout)
        self.tools_dir = self.settings.data_dir / "tools"
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        if start_worker:
            self.queue.start()

    @property
    def max_json_depth(self) -> int:
        """Deepest nesting a workflow may have (settings: server.max_json_depth)."""
        return self.settings.server.max_json_depth

    def close(self) -> None:
        self.queue.close()
        (self.router or self.executor).shutdown(wait=2.0)

    # ---- remote ComfyUI servers -----------------------------------------------------------------------------
    def comfyui_status(self) -> list[dict[str, Any]]:
        """The configured ComfyUI servers as last read (reachable, node count, why not)."""
        return self.router.status() if self.router is not None else []

    def refresh_comfyui(self) -> dict[str, Any]:
        """Re-read every ComfyUI server's catalog and installed models (their choice lists)."""
        if self.router is None:
            raise ServiceError("no ComfyUI server is configured (--comfyui-url, or [comfyui] urls)",
                               kind="comfyui_not_configured")
        with self._refresh_lock:
            return {"servers": self.router.refresh()}

    # ---- reading workflows --------------------------------------------------------------------------------
    def load(self, workflow: Any) -> dict[str, Any]:
        """API JSON, UI JSON or text form (as an object or a string) → API JSON, or a ServiceError.

        Nesting is bounded before anything recursive reads the workflow."""
        too_deep = ServiceError(f"the workflow nests deeper than {self.max_json_depth} levels", kind="too_deep")
        if isinstance(workflow, str) and workflow.strip().startswith(("{", "[")):
            if json_text_too_deep(workflow, self.max_json_depth):
                raise too_deep
            try:
                workflow = json.loads(workflow)
            except json.JSONDecodeError as exc:
                raise ServiceError(f"invalid JSON: {exc.msg} at line {exc.lineno}", kind="invalid_workflow_format") from None
        elif isinstance(workflow, dict | list) and object_too_deep(workflow, self.max_json_depth):
            raise too_deep
        try:
            with _depth_guard():
                return load_workflow(workflow, self.registry).prompt
        except WorkflowFormatError as exc:
            raise ServiceError("the workflow cannot be read", kind="invalid_workflow_format",
                               details=[e.model_dump() for e in exc.errors]) from None

    # ---- planning and validation ------------------------------------------------------------------------
    def plan(self, request: str, *, provider: str | None = None, model: str | None = None, run: bool = False,
             answers: dict[str, str] | None = None, timeout: float = 600, workflow: Any = None,
             chat_model: Any = None) -> dict[str, Any]:
        """Plan from words; with `workflow` (any form `load` reads), edit that workflow as the words say.

        The planner: `provider` > the server's configured provider > `chat_model` (the MCP caller's own
        model, when the client can sample) > the offline planner."""
        base = self.load(workflow) if workflow is not None else None
        provider = planner_provider(provider)
        result: PlanResult = plan(request, provider=provider, model=model, registry=self.registry, answers=answers,
                                  max_request_chars=self.settings.server.max_plan_chars, workflow=base,
                                  chat_model=None if provider else chat_model)
        data = result.model_dump()
        if run and result.status in ("valid", "partial") and result.workflow:
            job = self.run(result.workflow, timeout=timeout)
            data["job"] = self.job_summary(job)
            data["outputs"] = job.outputs
            data["status"] = "ran" if job.status == "success" else "failed"
        return data

    def validate(self, workflow: Any) -> dict[str, Any]:
        prompt = self.load(workflow)
        with _depth_guard():
            result = validate(prompt, self.registry)
        return {"valid": result.valid, "errors": [e.model_dump() for e in result.errors],
                "warnings": [w.model_dump() for w in result.warnings if w.type not in ("input_default_used",)],
                "outputs": result.outputs, "node_errors": result.node_errors(),
                "order": result.plan.order if result.plan else None}

    # ---- jobs -----------------------------------------------------------------------------------------
    def submit(self, workflow: Any, *, client_id: str | None = None, priority: int = 0,
               extra_data: dict | None = None, targets: list[Any] | None = None, partial: bool = False) -> Job:
        """Validate and queue. `targets` (ComfyUI's partial_execution_targets) picks the outputs to run; with
        `partial` (ComfyUI's /prompt) the valid outputs run and the invalid ones' errors are in the job's
        `node_errors`, otherwise any error refuses the workflow."""
        prompt = self.load(workflow)
        extra_data = extra_data or {}
        if object_too_deep(extra_data, self.max_json_depth):
            raise ServiceError(f"extra_data nests deeper than {self.max_json_depth} levels", kind="too_deep")
        outputs = None if targets is None else self._target_outputs(prompt, targets)
        try:
            with _depth_guard():
                return self.queue.submit(prompt, client_id=client_id, priority=priority, extra_data=extra_data,
                                         outputs=outputs, partial=partial)
        except UnicodeEncodeError:  # the job store holds UTF-8 text; a lone surrogate cannot be stored
            raise ServiceError("the request holds text that is not valid Unicode (a lone surrogate such as "
                               "\\ud800)", kind="invalid_text") from None

    def _target_outputs(self, prompt: dict[str, Any], targets: list[Any]) -> list[str]:
        """The output nodes named in partial_execution_targets; as in ComfyUI, other ids are ignored and
        none left is "Prompt has no outputs"."""
        wanted = {str(t) for t in targets if isinstance(t, str | int) and not isinstance(t, bool)}
        chosen = []
        for node_id, node in prompt.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if node_id in wanted and isinstance(class_type, str) and class_type in self.registry \
                    and self.registry.spec(class_type).output_node:
                chosen.append(node_id)
        if not chosen:
            raise ServiceError("Prompt has no outputs: partial_execution_targets names no output node of the "
                               "workflow", kind="prompt_no_outputs",
                               details={"partial_execution_targets": [str(t)[:200] for t in targets[:50]]})
        return chosen

    def run(self, workflow: Any, *, timeout: float = 600, client_id: str | None = None) -> Job:
        job = self.submit(workflow, client_id=client_id)
        return self.queue.wait(job.id, timeout=timeout)

    def get_job(self, job_id: str) -> Job:
        try:
            return self.queue.get(job_id)
        except JobNotFound:
            raise ServiceError(f"no job {job_id!r}", status=404, kind="job_not_found") from None

    def list_jobs(self, status: str | None = None, limit: int = 50) -> list[Job]:
        statuses = (status,) if status else None
        return self.queue.store.list(statuses, limit=limit)

    def cancel_job(self, job_id: str) -> bool:
        try:
            return self.queue.cancel(job_id)
        except JobNotFound:
            raise ServiceError(f"no job {job_id!r}", status=404, kind="job_not_found") from None

    def cancel_jobs(self, job_ids: Iterable[str]) -> int:
        """Cancel each listed job that exists (ComfyUI's POST /queue `delete`); unknown ids are skipped."""
        done = 0
        for job_id in job_ids:
            if not is_unicode_text(job_id):  # cannot name a stored job
                continue
            with contextlib.suppress(JobNotFound):
                done += bool(self.queue.cancel(job_id))
        return done

    def clear_queue(self) -> int:
        return self.cancel_jobs(job.id for job in self.queue.pending())

    def delete_history(self, job_ids: list[str] | None = None) -> int:
        """Forget finished jobs: the listed ones, or (None) all of them. Running and queued jobs stay."""
        if job_ids is None:
            return self.queue.store.delete(statuses=tuple(FINISHED))
        ids = [i for i in job_ids if is_unicode_text(i)]
        return sum(self.queue.store.delete(ids[at:at + _SQL_CHUNK]) for at in range(0, len(ids), _SQL_CHUNK))

    def interrupt(self) -> None:
        self.queue.interrupt()

    @staticmethod
    def job_summary(job: Job) -> dict[str, Any]:
        return {"id": job.id, "status": job.status, "outputs": job.outputs, "error": job.error,
                "executed": len(job.executed), "cached": len(job.cached),
                "seconds": round((job.finished_at or time.time()) - (job.started_at or job.created_at), 3)
                if job.started_at else None}

    def output_files(self, job: Job) -> list[Path]:
        paths = []
        for ui in job.outputs.values():
            for item in ui.get("images", []) + ui.get("files", []):
                if isinstance(item, dict) and "filename" in item:
                    try:
                        paths.append(self.file_path(item["filename"], item.get("subfolder", ""),
                                                    item.get("type", "output")))
                    except ServiceError:
                        continue
        return paths

    # ---- catalog -----------------------------------------------------------------------------------------
    def search_nodes(self, query: str = "", *, produces: str | None = None, consumes: str | None = None,
                     limit: int = 10) -> list[dict[str, Any]]:
        return [h.model_dump() for h in self.registry.search(query, produces=produces, consumes=consumes,
                                                              limit=max(1, min(limit, 100)))]

    def get_node(self, name: str) -> dict[str, Any]:
        if name not in self.registry:
            close = self.registry.suggest(name)
            raise ServiceError(f"unknown node {name!r}" + (f"; did you mean {', '.join(close)}?" if close else ""),
                               status=404, kind="missing_node_type", details={"suggestions": close})
        return {"name": name, "schema": self.registry.describe(name), "object_info": self.registry.node_info(name)}

    def object_info(self, name: str | None = None) -> dict[str, Any]:
        if name is None:
            return self.registry.object_info()
        if name not in self.registry:
            raise ServiceError(f"unknown node {name!r}", status=404, kind="missing_node_type")
        return {name: self.registry.node_info(name)}

    def templates(self) -> dict[str, Any]:
        examples = Path(__file__).resolve().parents[1] / "examples"
        found = {}
        for path in sorted(examples.glob("*.json")):
            try:
                found[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return found

    # ---- files ------------------------------------------------------------------------------------------
    @staticmethod
    def _roots() -> dict[str, Path]:
        return {"input": folders.input_dir(), "temp": folders.temp_dir(), "output": folders.output_dir()}

    def file_path(self, filename: str, subfolder: str = "", kind: str = "output") -> Path:
        roots = self._roots()
        if kind not in roots:
            raise ServiceError(f"type must be one of {sorted(roots)}", kind="bad_request")
        name = f"{subfolder}/{filename}" if subfolder else filename
        try:
            path = folders.safe_join(roots[kind], name)
            found = path.is_file()
        except folders.UnsafePathError as exc:
            raise ServiceError(str(exc), status=403, kind="forbidden_path") from None
        except (OSError, ValueError) as exc:  # a name too long for the file system, or not encodable
            raise ServiceError(f"no file {name!r} in {kind}: {getattr(exc, 'strerror', None) or exc}",
                               kind="bad_filename") from None
        if not found:
            raise ServiceError(f"no file {name!r} in {kind}", status=404, kind="file_not_found")
        return path

    def upload(self, filename: str, data: bytes, *, subfolder: str = "", kind: str = "input",
               overwrite: bool = False) -> dict[str, str]:
        """Store an uploaded file (ComfyUI's /upload/image) inside its folder, whatever the names say.

        The folder is resolved and checked to lie inside the root; the file itself is never written through
        a symlink: a new name is created with O_EXCL|O_NOFOLLOW (a link, even a dangling one, counts as
        taken and the next " (n)" name is tried), and an overwrite replaces the directory entry."""
        roots = self._roots()
        if kind not in roots:
            raise ServiceError(f"type must be one of {sorted(roots)}")
        name = _upload_name(filename or "upload.png")
        root = roots[kind]
        folder = _upload_folder(root, subfolder)
        try:
            target = _replace_file(root, folder, name, data) if overwrite else _create_file(root, folder, name, data)
        except OSError as exc:
            raise _write_error(exc, name) from None
        return {"name": target.name, "subfolder": subfolder, "type": kind}

    def model_kinds(self) -> list[str]:
        """ComfyUI's GET /models: the model folder kinds known here."""
        return folders.model_kinds()

    def model_files(self, kind: str) -> list[str]:
        """ComfyUI's GET /models/{folder}: the installed files of one kind; an unknown kind is a 404."""
        kind = folders.canonical_kind(kind)
        if kind not in folders.model_kinds():
            raise NotFound(f"no model folder kind {kind!r}; known kinds: {', '.join(folders.model_kinds())}",
                           kind="unknown_model_folder")
        return folders.model_files(kind)

    def system_stats(self) -> dict[str, Any]:
        devices = []
        try:
            import torch

            if torch.cuda.is_available():
                free, total = torch.cuda.mem_get_info()
                devices.append({"name": torch.cuda.get_device_name(), "type": "cuda", "index": 0,
                                "vram_total": total, "vram_free": free, "torch_vram_total": total,
                                "torch_vram_free": free})
        except ImportError:
            pass
        if not devices:
            devices.append({"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0,
                            "torch_vram_total": 0, "torch_vram_free": 0})
        return {"system": {"os": sys.platform, "python_version": sys.version, "embedded_python": False,
                           "comfyui_version": f"nodeweaver-{__version__}", "pytorch_version": _torch_version(),
                           "platform": platform.platform()}, "devices": devices}

    # ---- workflows published as tools ------------------------------------------------------------------
    def save_tool(self, tool: WorkflowTool) -> WorkflowTool:
        if not TOOL_NAME.match(tool.name):
            raise ServiceError("a tool name is lower case letters, digits and _ (start with a letter)")
        if tool.name in RESERVED_TOOL_NAMES:
            raise ServiceError(f"{tool.name!r} is the name of one of NodeWeaver's own tools; choose another",
                               kind="tool_name_taken", status=409)
        prompt = self.load(tool.workflow)
        for name, param in tool.params.items():
            if param.node not in prompt:
                raise ServiceError(f"parameter {name!r} names node {param.node!r}, which is not in the workflow")
        result = validate(prompt, self.registry)
        if not result.valid:
            raise ServiceError("the workflow does not validate", details=[e.model_dump() for e in result.errors])
        saved = tool.model_copy(update={"workflow": prompt})
        self.tools_dir.mkdir(parents=True, exist_ok=True)
        (self.tools_dir / f"{tool.name}.json").write_text(saved.model_dump_json(indent=2), encoding="utf-8")
        return saved

    def list_tools(self) -> list[WorkflowTool]:
        tools = []
        for path in sorted(self.tools_dir.glob("*.json")) if self.tools_dir.is_dir() else []:
            try:
                tools.append(WorkflowTool.model_validate_json(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return tools

    def get_tool(self, name: str) -> WorkflowTool:
        for tool in self.list_tools():
            if tool.name == name:
                return tool
        raise ServiceError(f"no workflow tool {name!r}", status=404, kind="tool_not_found")

    def tool_workflow(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        tool = self.get_tool(name)
        prompt = json.loads(json.dumps(tool.workflow))
        unknown = set(args) - set(tool.params)
        if unknown:
            raise ServiceError(f"{name} has no parameter(s) {sorted(unknown)}; it takes {sorted(tool.params)}")
        for pname, param in tool.params.items():
            if pname in args and args[pname] is not None:
                prompt[param.node]["inputs"][param.input] = args[pname]
        return prompt

    def call_tool(self, name: str, args: dict[str, Any], *, timeout: float = 600) -> Job:
        return self.run(self.tool_workflow(name, args), timeout=timeout)

    # ---- ComfyUI shapes -----------------------------------------------------------------------------------
    @staticmethod
    def comfy_queue_item(job: Job) -> list:
        return [job.number, job.id, job.prompt, job.extra_data, job.plan.get("outputs", [])]

    def comfy_queue(self) -> dict[str, Any]:
        return {"queue_running": [self.comfy_queue_item(j) for j in self.queue.running()],
                "queue_pending": [self.comfy_queue_item(j) for j in self.queue.pending()]}

    def comfy_history_item(self, job: Job) -> dict[str, Any]:
        status = "success" if job.status == "success" else "error"
        return {"prompt": self.comfy_queue_item(job), "outputs": job.outputs,
                "status": {"status_str": status, "completed": job.status == "success",
                           "messages": [["execution_error", job.error]] if job.error else []},
                "meta": {n: {"node_id": n, "display_node": n} for n in job.outputs}}

    def comfy_history(self, prompt_id: str | None = None, max_items: int | None = 200,
                      offset: int | None = None) -> dict[str, Any]:
        """ComfyUI's /history, oldest first: `offset` skips that many of the oldest and `max_items` bounds the
        count; without an offset (ComfyUI's -1) the newest `max_items`. At most HISTORY_LIMIT items."""
        if prompt_id is not None:
            job = self.queue.store.get(prompt_id) if is_unicode_text(prompt_id) else None
            return {job.id: self.comfy_history_item(job)} if job and job.status in FINISHED else {}
        count = HISTORY_LIMIT if max_items is None else max(0, min(max_items, HISTORY_LIMIT))
        if offset is None or offset < 0:
            jobs = self.queue.history(limit=count)[::-1]
        else:  # the oldest `offset` are skipped: read newest first from the matching end
            total = self.queue.store.count(FINISHED)
            first = max(0, total - offset - count)
            jobs = self.queue.history(limit=max(0, min(count, total - offset)), offset=first)[::-1]
        return {j.id: self.comfy_history_item(j) for j in jobs}

    def queue_remaining(self) -> int:
        return len(self.queue.pending()) + len(self.queue.running())

    def client_of(self, prompt_id: str) -> str | None:
        return self.queue.store.client_of(prompt_id)


def _output_cache(settings: Settings) -> OutputCache:
    """The executor's cache under ComfyUI's policies: "none" keeps nothing between prompts, "lru" keeps at
    most cache_lru_size entries (when set), "classic" keeps what the memory budget allows."""
    engine = settings.engine
    if engine.cache == "none":
        return OutputCache(max_bytes=engine.output_cache_bytes, enabled=False)
    if engine.cache == "lru" and engine.cache_lru_size is not None:
        return OutputCache(max_entries=engine.cache_lru_size, max_bytes=engine.output_cache_bytes)
    return OutputCache(max_bytes=engine.output_cache_bytes)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _upload_name(name: str) -> str:
    """An upload's file name as given, or a clear 400: a bare name (folders go in `subfolder`), valid
    Unicode, no control characters, short enough to be stored with a " (n)" suffix."""
    if not name.strip() or name in (".", ".."):
        raise ServiceError("a file name is required", kind="bad_filename")
    if "/" in name or "\\" in name:
        raise ServiceError(f"file name {name!r} must not contain a folder; send folders as `subfolder`",
                           kind="bad_filename")
    if not is_unicode_text(name) or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ServiceError(f"file name {name!r} holds characters a file name cannot have", kind="bad_filename")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise ServiceError(f"file name is {len(name.encode('utf-8'))} bytes long; at most {MAX_NAME_BYTES}",
                           kind="name_too_long")
    return name


def _upload_folder(root: Path, subfolder: str) -> Path:
    """The resolved folder an upload goes to, created if needed, checked to lie inside `root`."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        real_root = root.resolve()
        if not subfolder:
            return real_root
        if not is_unicode_text(subfolder):
            raise ServiceError(f"subfolder {subfolder!r} is not valid Unicode", kind="bad_filename")
        folder = folders.safe_join(root, subfolder)
        folder.mkdir(parents=True, exist_ok=True)
        folder = folder.resolve()
    except folders.UnsafePathError as exc:
        raise ServiceError(str(exc), status=403, kind="forbidden_path") from None
    except OSError as exc:
        raise _write_error(exc, subfolder) from None
    if not _inside(folder, real_root):  # a link appeared between the check and the mkdir
        raise ServiceError(f"subfolder {subfolder!r} leaves its folder", status=403, kind="forbidden_path")
    return folder


def _check_target(root: Path, target: Path) -> None:
    """The final path, resolved (through a link if it is one), must lie inside the root."""
    real_root = root.resolve()
    if not _inside(target.parent.resolve(), real_root) or not _inside(target.resolve(), real_root):
        raise ServiceError(f"{target.name!r} leads outside its folder", status=403, kind="forbidden_path")


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def _create_file(root: Path, folder: Path, name: str, data: bytes) -> Path:
    """Write `data` under `name`, or ComfyUI's "name (1).ext", "name (2).ext"... when that is taken."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for counter in range(10_000):
        target = folder / (name if counter == 0 else f"{stem} ({counter}){suffix}")
        if target.is_symlink():  # taken; never followed, whether it dangles or not
            continue
        _check_target(root, target)
        try:
            fd = os.open(target, _NEW_FILE, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return target
    raise ServiceError(f"too many files named like {name!r}", status=409, kind="name_taken")


def _replace_file(root: Path, folder: Path, name: str, data: bytes) -> Path:
    """Overwrite `name`: write a fresh file beside it and rename it over the old entry, so an existing
    link is replaced, never written through (links leaving the folder are refused)."""
    target = folder / name
    _check_target(root, target)
    temporary = folder / f".{uuid.uuid4().hex}.upload"
    fd = os.open(temporary, _NEW_FILE, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def _write_error(exc: OSError, name: str) -> ServiceError:
    """An OSError from storing a file, as a clear error: the client's fault (4xx) or the disk's (5xx)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENAMETOOLONG:
        return ServiceError(f"{name!r}: {reason}", kind="name_too_long")
    if exc.errno in (errno.EISDIR, errno.ENOTDIR, errno.EEXIST):
        return ServiceError(f"{name!r}: {reason}", status=409, kind="name_taken")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.ELOOP):
        return ServiceError(f"{name!r}: {reason}", status=403, kind="forbidden_path")
    if exc.errno == errno.ENOSPC:
        return ServiceError(f"cannot store {name!r}: {reason}", status=507, kind="no_space")
    return ServiceError(f"cannot store {name!r}: {reason}", status=500, kind="write_failed")


def _torch_version() -> str:
    try:
        import torch

        return str(torch.__version__)
    except ImportError:
        return ""


__all__ = ["NodeWeaverService", "ServiceError", "ToolParam", "WorkflowInvalid", "WorkflowTool"]
