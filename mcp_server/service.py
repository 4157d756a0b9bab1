"""NodeWeaver's one service API. The MCP tools and the HTTP endpoints are thin adapters over this class;
no logic lives only in an adapter."""

from __future__ import annotations

import json
import platform
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.planner import PlanResult, plan
from compiler import WorkflowFormatError, load_workflow, validate
from engine import EventBus, Executor
from engine.jobs import FINISHED, Job, JobNotFound, JobQueue, WorkflowInvalid
from nodes.registry import NodeRegistry, default_registry
from nodeweaver import __version__
from runtime import folders
from runtime.errors import NodeWeaverError
from runtime.settings import Settings, current

TOOL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


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
                 settings: Settings | None = None) -> None:
        self.registry = registry or default_registry()
        self.settings = settings or current()
        self.bus = EventBus()
        self.executor = Executor(self.registry, bus=self.bus)
        self.queue = JobQueue(self.registry, self.settings.data_dir / "jobs.sqlite3", executor=self.executor,
                              node_timeout=self.settings.engine.node_timeout)
        self.tools_dir = self.settings.data_dir / "tools"
        self._lock = threading.Lock()
        if start_worker:
            self.queue.start()

    def close(self) -> None:
        self.queue.close()
        self.executor.shutdown()

    # ---- reading workflows --------------------------------------------------------------------------------
    def load(self, workflow: Any) -> dict[str, Any]:
        """API JSON, UI JSON or text form (as an object or a string) → API JSON, or a ServiceError."""
        if isinstance(workflow, str) and workflow.strip().startswith(("{", "[")):
            try:
                workflow = json.loads(workflow)
            except json.JSONDecodeError as exc:
                raise ServiceError(f"invalid JSON: {exc.msg} at line {exc.lineno}", kind="invalid_workflow_format") from None
        try:
            return load_workflow(workflow, self.registry).prompt
        except WorkflowFormatError as exc:
            raise ServiceError("the workflow cannot be read", kind="invalid_workflow_format",
                               details=[e.model_dump() for e in exc.errors]) from None

    # ---- planning and validation ------------------------------------------------------------------------
    def plan(self, request: str, *, provider: str | None = None, model: str | None = None, run: bool = False,
             answers: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
        result: PlanResult = plan(request, provider=provider, model=model, registry=self.registry, answers=answers)
        data = result.model_dump()
        if run and result.status == "valid" and result.workflow:
            job = self.run(result.workflow, timeout=timeout)
            data["job"] = self.job_summary(job)
            data["outputs"] = job.outputs
            data["status"] = "ran" if job.status == "success" else "failed"
        return data

    def validate(self, workflow: Any) -> dict[str, Any]:
        prompt = self.load(workflow)
        result = validate(prompt, self.registry)
        return {"valid": result.valid, "errors": [e.model_dump() for e in result.errors],
                "warnings": [w.model_dump() for w in result.warnings if w.type not in ("input_default_used",)],
                "outputs": result.outputs, "node_errors": result.node_errors(),
                "order": result.plan.order if result.plan else None}

    # ---- jobs -----------------------------------------------------------------------------------------
    def submit(self, workflow: Any, *, client_id: str | None = None, priority: int = 0,
               extra_data: dict | None = None) -> Job:
        prompt = self.load(workflow)
        return self.queue.submit(prompt, client_id=client_id, priority=priority, extra_data=extra_data or {})

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
    def file_path(self, filename: str, subfolder: str = "", kind: str = "output") -> Path:
        roots = {"output": folders.output_dir(), "input": folders.input_dir(), "temp": folders.temp_dir()}
        if kind not in roots:
            raise ServiceError(f"type must be one of {sorted(roots)}", kind="bad_request")
        name = f"{subfolder}/{filename}" if subfolder else filename
        try:
            path = folders.safe_join(roots[kind], name)
        except folders.UnsafePathError as exc:
            raise ServiceError(str(exc), status=403, kind="forbidden_path") from None
        if not path.is_file():
            raise ServiceError(f"no file {name!r} in {kind}", status=404, kind="file_not_found")
        return path

    def upload(self, filename: str, data: bytes, *, subfolder: str = "", kind: str = "input",
               overwrite: bool = False) -> dict[str, str]:
        roots = {"input": folders.input_dir(), "temp": folders.temp_dir(), "output": folders.output_dir()}
        if kind not in roots:
            raise ServiceError(f"type must be one of {sorted(roots)}")
        base = Path(filename or "upload.png").name
        if not base or base in (".", ".."):
            raise ServiceError("a file name is required")
        try:
            target = folders.safe_join(roots[kind], f"{subfolder}/{base}" if subfolder else base)
        except folders.UnsafePathError as exc:
            raise ServiceError(str(exc), status=403, kind="forbidden_path") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix, counter = target.stem, target.suffix, 1
        while target.exists() and not overwrite:
            target = target.with_name(f"{stem} ({counter}){suffix}")
            counter += 1
        target.write_bytes(data)
        return {"name": target.name, "subfolder": subfolder, "type": kind}

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

    def comfy_history(self, prompt_id: str | None = None, max_items: int = 200) -> dict[str, Any]:
        if prompt_id is not None:
            job = self.queue.store.get(prompt_id)
            return {job.id: self.comfy_history_item(job)} if job and job.status in FINISHED else {}
        return {j.id: self.comfy_history_item(j) for j in self.queue.history(limit=max_items)}

    def queue_remaining(self) -> int:
        return len(self.queue.pending()) + len(self.queue.running())

    def client_of(self, prompt_id: str) -> str | None:
        job = self.queue.store.get(prompt_id)
        return job.client_id if job else None


def _torch_version() -> str:
    try:
        import torch

        return str(torch.__version__)
    except ImportError:
        return ""


__all__ = ["NodeWeaverService", "ServiceError", "ToolParam", "WorkflowInvalid", "WorkflowTool"]
