"""The HTTP face: ComfyUI-compatible endpoints, NodeWeaver's own (/api/plan, /api/tools), the /ws
websocket with ComfyUI's messages, and MCP's streamable HTTP mounted at /mcp — one FastAPI app."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import uuid
from typing import Any
from urllib.parse import urlparse

import anyio
from fastapi import FastAPI, File, Form, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.middleware.base import BaseHTTPMiddleware

from engine.jobs import WorkflowInvalid
from mcp_server.service import NodeWeaverService, ServiceError, WorkflowTool

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class PlanRequest(BaseModel):
    request: str = Field(description="what the workflow should do, in Chinese or English")
    provider: str | None = None
    model: str | None = None
    run: bool = False
    answers: dict[str, str] | None = None


class PromptRequest(BaseModel):
    prompt: Any = None
    client_id: str | None = None
    number: float | None = None
    front: bool | None = None
    extra_data: dict[str, Any] = Field(default_factory=dict)


class _Guard(BaseHTTPMiddleware):
    """Bearer token (when set), Origin check and, on a loopback bind, Host check (DNS rebinding)."""

    def __init__(self, app, *, token: str | None, loopback: bool, allowed_origins: list[str]):
        super().__init__(app)
        self.token, self.loopback, self.allowed = token, loopback, set(allowed_origins)

    async def dispatch(self, request: Request, call_next):
        problem = check_request(request.headers, request.query_params, self.token, self.loopback, self.allowed)
        if problem:
            status, message = problem
            return JSONResponse({"error": {"type": "forbidden" if status == 403 else "unauthorized",
                                           "message": message}}, status_code=status)
        return await call_next(request)


def check_request(headers, query, token: str | None, loopback: bool, allowed: set[str]) -> tuple[int, str] | None:
    origin = headers.get("origin")
    if origin and origin not in allowed:
        host = urlparse(origin).hostname or ""
        if not (loopback and is_loopback(host)):
            return 403, f"origin {origin} is not allowed"
    if loopback and headers.get("host"):
        host = urlparse("//" + headers["host"]).hostname or ""
        if not is_loopback(host):
            return 403, f"host {host} is not allowed on a loopback server"
    if token:
        supplied = headers.get("authorization", "")
        if supplied != f"Bearer {token}" and query.get("token") != token:
            return 401, "a bearer token is required (Authorization: Bearer TOKEN)"
    return None


def create_app(service: NodeWeaverService, *, token: str | None = None, loopback: bool = True,
               allowed_origins: list[str] | None = None, mount_mcp: bool = True) -> FastAPI:
    from mcp_server.mcp_app import build_mcp

    mcp = build_mcp(service) if mount_mcp else None
    mcp_asgi = mcp.streamable_http_app(streamable_http_path="/") if mcp else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if mcp_asgi is not None:
            async with mcp_asgi.router.lifespan_context(mcp_asgi):
                yield
        else:
            yield

    app = FastAPI(title="NodeWeaver", version="0.1.0", lifespan=lifespan,
                  description="ComfyUI-compatible API plus planning from words. MCP streamable HTTP at /mcp/.")
    app.add_middleware(_Guard, token=token, loopback=loopback, allowed_origins=allowed_origins or [])
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError):
        return JSONResponse({"error": {"type": exc.kind, "message": str(exc), "details": exc.details}},
                            status_code=exc.status)

    @app.exception_handler(WorkflowInvalid)
    async def invalid(request: Request, exc: WorkflowInvalid):
        return JSONResponse({"error": exc.result.comfy_error(), "node_errors": exc.result.node_errors()},
                            status_code=400)

    # ---- ComfyUI-compatible ------------------------------------------------------------------------------
    @app.post("/prompt")
    async def post_prompt(body: PromptRequest):
        if not isinstance(body.prompt, dict | str):
            raise ServiceError("'prompt' must be a workflow object", kind="no_prompt")
        job = await anyio.to_thread.run_sync(lambda: service.submit(
            body.prompt, client_id=body.client_id, priority=1 if body.front else 0, extra_data=body.extra_data))
        return {"prompt_id": job.id, "number": job.number, "node_errors": {}}

    @app.get("/prompt")
    async def get_prompt_status():
        return {"exec_info": {"queue_remaining": service.queue_remaining()}}

    @app.get("/queue")
    async def get_queue():
        return service.comfy_queue()

    @app.post("/queue")
    async def post_queue(body: dict[str, Any]):
        if body.get("clear"):
            for job in service.queue.pending():
                service.cancel_job(job.id)
        for job_id in body.get("delete", []) or []:
            with contextlib.suppress(ServiceError):
                service.cancel_job(str(job_id))
        return {}

    @app.get("/history")
    async def get_history(max_items: int = 200):
        return service.comfy_history(max_items=max_items)

    @app.get("/history/{prompt_id}")
    async def get_history_item(prompt_id: str):
        return service.comfy_history(prompt_id)

    @app.post("/history")
    async def post_history(body: dict[str, Any]):
        if body.get("clear"):
            service.queue.store.delete(statuses=("success", "error", "interrupted", "cancelled", "failed_by_restart"))
        if body.get("delete"):
            service.queue.store.delete([str(i) for i in body["delete"]])
        return {}

    @app.get("/object_info")
    async def object_info():
        return await anyio.to_thread.run_sync(service.object_info)

    @app.get("/object_info/{node_class}")
    async def object_info_one(node_class: str):
        return service.object_info(node_class)

    @app.get("/view")
    async def view(filename: str, subfolder: str = "", type: str = Query("output")):
        return FileResponse(service.file_path(filename, subfolder, type))

    @app.post("/upload/image")
    async def upload_image(image: UploadFile = File(...), type: str = Form("input"), subfolder: str = Form(""),
                           overwrite: str = Form("false")):
        data = await image.read()
        return service.upload(image.filename or "upload.png", data, subfolder=subfolder, kind=type,
                              overwrite=overwrite.lower() in ("true", "1"))

    @app.post("/interrupt")
    async def interrupt():
        service.interrupt()
        return {}

    @app.get("/system_stats")
    async def system_stats():
        return service.system_stats()

    # ---- NodeWeaver's own ------------------------------------------------------------------------------
    @app.post("/api/plan")
    async def api_plan(body: PlanRequest):
        return await anyio.to_thread.run_sync(lambda: service.plan(
            body.request, provider=body.provider, model=body.model, run=body.run, answers=body.answers))

    @app.post("/api/validate")
    async def api_validate(body: dict[str, Any]):
        return service.validate(body.get("workflow", body))

    @app.get("/api/tools")
    async def api_tools():
        return [t.model_dump(exclude={"workflow"}) for t in service.list_tools()]

    @app.post("/api/tools")
    async def api_save_tool(tool: WorkflowTool):
        saved = service.save_tool(tool)
        if mcp is not None:
            from mcp_server.mcp_app import register_workflow_tool

            register_workflow_tool(mcp, service, saved)
        return saved.model_dump(exclude={"workflow"})

    @app.post("/api/tools/{name}")
    async def api_call_tool(name: str, body: dict[str, Any]):
        job = await anyio.to_thread.run_sync(lambda: service.call_tool(name, body))
        return service.job_summary(job)

    @app.get("/api/jobs/{job_id}")
    async def api_job(job_id: str):
        return service.job_summary(service.get_job(job_id))

    # ---- websocket --------------------------------------------------------------------------------------
    @app.websocket("/ws")
    async def websocket(ws: WebSocket):
        problem = check_request(ws.headers, ws.query_params, token, loopback, set(allowed_origins or []))
        if problem:
            await ws.close(code=4401 if problem[0] == 401 else 4403)
            return
        client_id = ws.query_params.get("clientId") or uuid.uuid4().hex
        await ws.accept()
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()
        owners: dict[str, str | None] = {}

        def forward(event) -> None:
            prompt_id = event.data.get("prompt_id")
            if prompt_id not in owners:
                owners[prompt_id] = service.client_of(prompt_id) if prompt_id else None
            owner = owners[prompt_id]
            if owner in (None, client_id):
                loop.call_soon_threadsafe(outbox.put_nowait, event.to_comfy())
                if event.type in ("execution_success", "execution_error", "execution_interrupted"):
                    done = {"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}
                    loop.call_soon_threadsafe(outbox.put_nowait, done)

        unsubscribe = service.bus.subscribe(forward)
        try:
            await ws.send_json({"type": "status", "data": {"status": {"exec_info": {
                "queue_remaining": service.queue_remaining()}}, "sid": client_id}})
            while True:
                message = await outbox.get()
                await ws.send_text(json.dumps(message, default=str))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            unsubscribe()

    if mcp_asgi is not None:
        app.mount("/mcp", mcp_asgi)
    return app
