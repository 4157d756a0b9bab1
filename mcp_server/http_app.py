"""The HTTP face: ComfyUI-compatible endpoints, NodeWeaver's own (/api/plan, /api/tools), the /ws
websocket with ComfyUI's messages, and MCP's streamable HTTP mounted at /mcp — one FastAPI app.

Hardened at the boundary, whatever the code behind it does: bodies are bounded in size (413) and nesting
(400) before anything recursive reads them, replies are always strict JSON (encoded off the event loop),
every service call runs in a worker thread, and errors come back structured, never as a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlparse

import anyio
from fastapi import FastAPI, File, Form, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.jobs import WorkflowInvalid
from mcp_server.service import (
    HISTORY_LIMIT,
    NodeWeaverService,
    ServiceError,
    WorkflowTool,
    is_unicode_text,
    json_text_too_deep,
)
from mcp_server.templates_api import router as templates_router
from runtime.errors import BadRequest, NodeWeaverError

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
DOCS_STATIC = "/docs-static"
REPLY_DEPTH = 512  # replies deeper than this are cut; inputs are bounded far below it (max_json_depth)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- request bodies ------------------------------------------------------------------------------------
class PlanRequest(BaseModel):
    request: str = Field(description="what the workflow should do, in Chinese or English")
    provider: str | None = None
    model: str | None = None
    run: bool = False
    answers: dict[str, str] | None = None
    workflow: dict[str, Any] | str | None = Field(None, description="a workflow to edit as the request says "
                                                  "(API JSON, UI JSON or the text form) instead of planning anew")


class PromptRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: Any = None
    client_id: str | None = None
    number: float | None = None
    front: bool | None = None
    extra_data: dict[str, Any] = Field(default_factory=dict)
    partial_execution_targets: list[Any] | None = Field(
        default=None, max_length=HISTORY_LIMIT, description="run only these output nodes (and what they need)")


class QueueEdit(BaseModel):
    """ComfyUI's POST /queue and /history body: {"clear": true} and/or {"delete": [prompt ids]}."""

    model_config = ConfigDict(extra="ignore")

    clear: StrictBool = False
    delete: list[StrictStr] | None = Field(default=None, max_length=HISTORY_LIMIT)


def _error_list(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input (it may be huge, deep or not encodable)."""
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


def _decode_body(raw: bytes, max_depth: int, model: type[BaseModel] | None) -> Any:
    """Bytes → JSON (→ model): nesting bounded before parsing; unreadable JSON 422, a wrong shape 400."""
    if not raw.strip():
        raise NodeWeaverError("the request needs a JSON body", kind="invalid_json", status=422)
    if json_text_too_deep(raw, max_depth):
        raise BadRequest(f"the JSON body nests deeper than {max_depth} levels", kind="too_deep")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest("the JSON body nests too deeply", kind="too_deep") from None
    except ValueError as exc:  # bad syntax, not UTF-8, an integer too long to convert
        raise NodeWeaverError(f"the body is not valid JSON: {exc}", kind="invalid_json", status=422) from None
    if model is None:
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest("the request body has the wrong shape", details=_error_list(exc.errors())) from None


async def read_json(request: Request, model: type[BaseModel] | None = None) -> Any:
    """The body as JSON whatever its Content-Type (ComfyUI reads /prompt so; cross-site posts are refused
    by the Origin check), parsed and checked in a worker thread."""
    raw = await request.body()
    return await anyio.to_thread.run_sync(_decode_body, raw, request.app.state.max_json_depth, model)


async def read_object(request: Request) -> dict[str, Any]:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    return data


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    """Pydantic's `#/$defs/...` references replaced by the definitions (for our own small schemas)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def _body_doc(model: type[BaseModel] | None) -> dict[str, Any]:
    """OpenAPI for a body read by `read_json` (FastAPI documents only the bodies it parses itself)."""
    schema: dict[str, Any] = {"type": "object"}
    if model is not None:
        full = model.model_json_schema()
        schema = _inline_refs(full, full.get("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _int_param(name: str, raw: str | None, *, minimum: int | None = None) -> int | None:
    if raw is None or not raw.strip():
        return None
    if not re.fullmatch(r"[+-]?\d{1,30}", raw.strip()):
        raise BadRequest(f"{name} must be an integer, not {raw[:40]!r}")
    value = int(raw)
    if minimum is not None and value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}, not {value}")
    return value


# ---- replies -------------------------------------------------------------------------------------------
def _clean_text(text: str) -> str:
    """Lone surrogates → U+FFFD (pairs that were split into two code points are joined)."""
    if is_unicode_text(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _clean_leaf(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 13_000 else f"<integer of {value.bit_length()} bits>"
    return _clean_text(value if isinstance(value, str) else str(value))


def strict_json(value: Any) -> Any:
    """A copy of `value` that strict JSON can hold, built without recursion: NaN/±inf → null (as
    JSON.stringify does), lone surrogates → U+FFFD, other objects → str, parts deeper than REPLY_DEPTH cut."""
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, holder, 0, 1)]
    while stack:
        item, parent, key, depth = stack.pop()
        if isinstance(item, dict | list | tuple | set | frozenset) and depth > REPLY_DEPTH:
            parent[key] = "<nested too deep>"
        elif isinstance(item, dict):
            shell: dict[str, Any] = {}
            parent[key] = shell
            for k, v in item.items():
                name = _clean_text(k) if isinstance(k, str) else json.dumps(_clean_leaf(k)).strip('"')
                shell[name] = None
                stack.append((v, shell, name, depth + 1))
        elif isinstance(item, list | tuple | set | frozenset):
            items = list(item)
            parent[key] = [None] * len(items)
            stack.extend((v, parent[key], i, depth + 1) for i, v in enumerate(items))
        else:
            parent[key] = _clean_leaf(item)
    return holder[0]


_JSON_KEYS = {True: "true", False: "false", None: "null"}


def _json_key(key: Any) -> str:
    """A dict key as json.dumps writes it; anything it would refuse raises TypeError (→ `strict_json`)."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or key is None:
        return _JSON_KEYS[key]
    if isinstance(key, int | float):
        return json.dumps(key, allow_nan=False)
    raise TypeError(f"key {key!r} is not JSON")


def _encode(value: Any, levels: int) -> bytes:
    """Containers in the top `levels` are encoded item by item. json.dumps holds the GIL for a whole call
    (seconds for a 45 MB reply); many short calls let the event loop run between them."""
    if levels and isinstance(value, dict):
        return b"{" + b",".join(_encode(_json_key(k), 0) + b":" + _encode(v, levels - 1)
                                for k, v in value.items()) + b"}"
    if levels and isinstance(value, list | tuple):
        return b"[" + b",".join(_encode(v, levels - 1) for v in value) + b"]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      default=str).encode("utf-8")


def encode_json(content: Any) -> bytes:
    """Strict JSON (RFC 8259) bytes for any reply; the fast path first, `strict_json` only when it fails."""
    try:
        return _encode(content, 2)
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return _encode(strict_json(content), 2)


class StrictJSONResponse(JSONResponse):
    """A JSON response that is always strictly encodable (see `encode_json`)."""

    def render(self, content: Any) -> bytes:
        return encode_json(content)


async def reply(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply encoded in a worker thread: large ones (object_info, history, 100,000 node errors)
    never stall the event loop."""
    body = await anyio.to_thread.run_sync(encode_json, content)
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def _error_body(kind: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "details": details}}


# ---- who may call: Origin, Host, token, CORS -----------------------------------------------------------
def _origin_key(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) origin, default ports filled in; None when it is not one."""
    parts = urlparse(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def own_origin(headers: Any, scheme: str) -> tuple[str, str, int] | None:
    """The origin this server is reached at, from the Host header and the request's scheme."""
    host = headers.get("host")
    if not host:
        return None
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return _origin_key(f"{http_scheme}://{host}")


def check_request(headers: Any, query: Any, token: str | None, loopback: bool, allowed: set[str], *,
                  scheme: str = "http", token_needed: bool = True) -> tuple[int, str] | None:
    """(status, reason) when a request must be refused: an Origin that is neither the server's own nor
    configured ("*" allows any), a Host that is not loopback on a loopback bind (DNS rebinding), a missing
    bearer token (header, or `token` in the query for browsers and websockets)."""
    origin = headers.get("origin")
    if origin and "*" not in allowed:
        key = _origin_key(origin)
        permitted = {_origin_key(o) for o in allowed} | {own_origin(headers, scheme)}
        if key is None or key not in permitted:
            return 403, f"origin {origin} is not allowed"
    if loopback and headers.get("host"):
        host = urlparse("//" + headers["host"]).hostname or ""
        if not is_loopback(host):
            return 403, f"host {host} is not allowed on a loopback server"
    if token and token_needed:
        supplied = headers.get("authorization", "")
        if supplied != f"Bearer {token}" and query.get("token") != token:
            return 401, "a bearer token is required (Authorization: Bearer TOKEN)"
    return None


class _Guard:
    """Refuses a request before any route runs (see `check_request`). CORS preflights and the static docs
    assets need no token: browsers cannot attach one to them."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback: bool, allowed_origins: list[str]) -> None:
        self.app, self.token, self.loopback, self.allowed = app, token, loopback, set(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in request.headers
        token_needed = not preflight and not scope["path"].startswith(DOCS_STATIC + "/")
        problem = check_request(request.headers, request.query_params, self.token, self.loopback, self.allowed,
                                scheme=scope.get("scheme", "http"), token_needed=token_needed)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message = problem
        response = StrictJSONResponse(_error_body("forbidden" if status == 403 else "unauthorized", message),
                                      status_code=status)
        await response(scope, receive, send)


class _BodyLimit:
    """Bodies over `limit` bytes get a JSON 413 before any route reads them whole: at once when
    Content-Length says so, else as soon as the bytes received pass the limit (chunked bodies)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app, self.limit = app, limit

    def _refusal(self) -> StarletteHTTPException:
        return StarletteHTTPException(413, f"the request body is larger than {self.limit} bytes "
                                           "(settings: server.max_body_bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            refusal = self._refusal()
            await StrictJSONResponse(_error_body("too_large", refusal.detail), status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._refusal()  # an HTTPException: FastAPI passes it on to the handler (413)
            return message

        await self.app(scope, counted, send)


class _LastResort:
    """Any exception no handler claimed is logged with its traceback and answered as a JSON 500 without
    internals, and not re-raised: the connection stays usable and the server goes on. It should never fire."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            if started:
                raise
            if isinstance(exc, StarletteHTTPException):  # from a mounted app, which has no handlers
                body, status = _error_body(_HTTP_KINDS.get(exc.status_code, "http_error"), exc.detail), exc.status_code
            else:
                log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
                body = _error_body("internal_error", "an internal error occurred; the server log has the details")
                status = 500
            await StrictJSONResponse(body, status_code=status)(scope, receive, send)


# ---- the app -------------------------------------------------------------------------------------------
class _Offload:
    """Service calls run in worker threads. Heavy ones (validate, submit, plan, object_info, queue and
    history listings) share a bounded pool, so a burst of them never takes the threads that light calls
    such as /system_stats need."""

    def __init__(self, heavy_threads: int) -> None:
        self.limiter = anyio.CapacityLimiter(heavy_threads)

    async def heavy(self, fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn, limiter=self.limiter)

    @staticmethod
    async def light(fn: Callable[[], Any]) -> Any:
        return await anyio.to_thread.run_sync(fn)


def create_app(service: NodeWeaverService, *, token: str | None = None, loopback: bool = True,
               allowed_origins: list[str] | None = None, mount_mcp: bool = True,
               max_body_bytes: int | None = None, max_json_depth: int | None = None) -> FastAPI:
    """The app. `allowed_origins`: browser origins besides the server's own that may call it (CORS);
    `max_body_bytes`: larger bodies get 413; `max_json_depth`: deeper JSON bodies get 400 (both default
    to the service's settings, [server] section)."""
    bounds = service.settings.server
    max_body_bytes = bounds.max_body_bytes if max_body_bytes is None else max_body_bytes
    max_json_depth = bounds.max_json_depth if max_json_depth is None else max_json_depth
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

    app = FastAPI(title="NodeWeaver", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None, default_response_class=StrictJSONResponse,
                  description="ComfyUI-compatible API plus planning from words. MCP streamable HTTP at /mcp/.")
    origins = list(allowed_origins or [])
    app.add_middleware(_BodyLimit, limit=max_body_bytes)  # innermost: its 413s get CORS headers too
    app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
                       allow_headers=["*"], max_age=600)
    app.add_middleware(_Guard, token=token, loopback=loopback, allowed_origins=origins)
    app.add_middleware(_LastResort)
    app.state.service = service
    app.state.max_json_depth = max_json_depth
    offload = _Offload(max(2, os.cpu_count() or 2))

    _error_handlers(app)
    _comfy_routes(app, service, offload)
    _file_routes(app, service, offload)
    _nodeweaver_routes(app, service, offload, mcp)
    app.include_router(templates_router)
    _ws_route(app, service, token=token, loopback=loopback, allowed=set(origins))
    _docs_routes(app)
    if mcp_asgi is not None:
        app.mount("/mcp", mcp_asgi)
    from mcp_server.ui_app import register_ui  # last: the web UI mounts "/", which matches every path

    register_ui(app, service, offload)
    return app


_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def _error_handlers(app: FastAPI) -> None:
    """One handler per error family; everything else is `_LastResort`'s."""

    @app.exception_handler(WorkflowInvalid)
    async def invalid(request: Request, exc: WorkflowInvalid) -> Response:
        return await reply({"error": exc.result.comfy_error(), "node_errors": exc.result.node_errors()}, 400)

    @app.exception_handler(NodeWeaverError)
    async def nodeweaver_error(request: Request, exc: NodeWeaverError) -> Response:
        return await reply({"error": exc.to_dict()}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        return await reply(_error_body("invalid_request", "the request's parameters are invalid",
                                       _error_list(list(exc.errors()))), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        return await reply(_error_body(kind, str(exc.detail)), exc.status_code, headers=exc.headers)


def _comfy_routes(app: FastAPI, service: NodeWeaverService, offload: _Offload) -> None:
    """ComfyUI's queue endpoints: /prompt, /queue, /history, /object_info, /interrupt, /system_stats."""

    @app.post("/prompt", openapi_extra=_body_doc(PromptRequest))
    async def post_prompt(request: Request) -> Response:
        body: PromptRequest = await read_json(request, PromptRequest)
        if not isinstance(body.prompt, dict | str):
            raise ServiceError("'prompt' must be a workflow object", kind="no_prompt")
        job = await offload.heavy(lambda: service.submit(
            body.prompt, client_id=body.client_id, priority=1 if body.front else 0, extra_data=body.extra_data,
            targets=body.partial_execution_targets, partial=True))
        return await reply({"prompt_id": job.id, "number": job.number, "node_errors": job.node_errors})

    @app.get("/prompt")
    async def get_prompt_status() -> Response:
        return await reply({"exec_info": {"queue_remaining": await offload.light(service.queue_remaining)}})

    @app.get("/queue")
    async def get_queue() -> Response:
        return await reply(await offload.heavy(service.comfy_queue))

    @app.post("/queue", openapi_extra=_body_doc(QueueEdit))
    async def post_queue(request: Request) -> Response:
        edit: QueueEdit = await read_json(request, QueueEdit)
        if edit.clear:
            await offload.light(service.clear_queue)
        if edit.delete:
            await offload.light(lambda: service.cancel_jobs(edit.delete or []))
        return await reply({})

    def this_run_only(all_runs: str | None) -> bool:
        """ComfyUI's /history holds this server run's jobs ([server] history_scope = "run", the default);
        `?all=true` (or history_scope = "all") gives every persisted job."""
        flags = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
        if all_runs is not None and all_runs.strip().lower() not in flags:
            raise BadRequest(f"all must be true or false, got {all_runs[:40]!r}", kind="invalid_parameter")
        wants_all = all_runs is not None and flags[all_runs.strip().lower()]
        return not wants_all and service.settings.server.history_scope == "run"

    def history_listing(count: int | None, start: int | None, this_run: bool) -> dict[str, Any]:
        if not this_run:
            return service.comfy_history(max_items=count, offset=start)
        limit = HISTORY_LIMIT if count is None else max(0, min(count, HISTORY_LIMIT))
        return {j.id: service.comfy_history_item(j) for j in service.queue.history_page(limit, start, this_run=True)}

    def history_item(prompt_id: str, this_run: bool) -> dict[str, Any]:
        found = service.comfy_history(prompt_id)
        if found and this_run and service.queue.store.get(prompt_id).run_id != service.queue.run_id:
            return {}
        return found

    def forget_this_run() -> None:
        while jobs := service.queue.history(limit=1000, this_run=True):
            service.delete_history([j.id for j in jobs])

    @app.get("/history")
    async def get_history(max_items: str | None = Query(None, description="at most this many, the newest"),
                          offset: str | None = Query(None, description="skip this many of the oldest"),
                          all_runs: str | None = Query(None, alias="all", description="true: every persisted "
                                                       "job, not only this server run's")) -> Response:
        """Without parameters the whole history (at most HISTORY_LIMIT items), as ComfyUI: clients compare it
        with `offset=0` and page through it by its length."""
        count = _int_param("max_items", max_items, minimum=0)
        start = _int_param("offset", offset)
        this_run = this_run_only(all_runs)
        return await reply(await offload.heavy(lambda: history_listing(count, start, this_run)))

    @app.get("/history/{prompt_id}")
    async def get_history_item(prompt_id: str, all_runs: str | None = Query(None, alias="all")) -> Response:
        this_run = this_run_only(all_runs)
        return await reply(await offload.light(lambda: history_item(prompt_id, this_run)))

    @app.post("/history", openapi_extra=_body_doc(QueueEdit))
    async def post_history(request: Request, all_runs: str | None = Query(None, alias="all")) -> Response:
        """`clear` forgets the jobs /history lists (this run's, unless all); `delete` the listed ones."""
        edit: QueueEdit = await read_json(request, QueueEdit)
        if edit.clear:
            await offload.light(forget_this_run if this_run_only(all_runs) else service.delete_history)
        if edit.delete:
            await offload.light(lambda: service.delete_history(edit.delete))
        return await reply({})

    @app.get("/object_info")
    async def object_info() -> Response:
        return await reply(await offload.heavy(service.object_info))

    @app.get("/object_info/{node_class}")
    async def object_info_one(node_class: str) -> Response:
        return await reply(await offload.light(lambda: service.object_info(node_class)))

    @app.post("/interrupt")
    async def interrupt() -> Response:
        service.interrupt()
        return await reply({})

    @app.get("/system_stats")
    async def system_stats() -> Response:
        return await reply(await offload.light(service.system_stats))

    @app.get("/models")
    async def model_kinds() -> Response:
        return await reply(await offload.light(service.model_kinds))

    @app.get("/models/{folder}")
    async def model_files(folder: str) -> Response:
        return await reply(await offload.light(lambda: service.model_files(folder)))


def _file_routes(app: FastAPI, service: NodeWeaverService, offload: _Offload) -> None:
    """ComfyUI's /view and /upload/image."""

    @app.get("/view")
    async def view(filename: str, subfolder: str = "", type: str = Query("output")) -> FileResponse:
        return FileResponse(await offload.light(lambda: service.file_path(filename, subfolder, type)))

    @app.post("/upload/image")
    async def upload_image(image: UploadFile = File(...), type: str = Form("input"), subfolder: str = Form(""),
                           overwrite: str = Form("false")) -> Response:
        data = await image.read()
        saved = await offload.light(lambda: service.upload(
            image.filename or "upload.png", data, subfolder=subfolder, kind=type,
            overwrite=overwrite.lower() in ("true", "1")))
        return await reply(saved)


def _nodeweaver_routes(app: FastAPI, service: NodeWeaverService, offload: _Offload, mcp: Any) -> None:
    """NodeWeaver's own: planning from words, validation, workflows saved as tools, jobs."""

    @app.post("/api/plan", openapi_extra=_body_doc(PlanRequest))
    async def api_plan(request: Request) -> Response:
        body: PlanRequest = await read_json(request, PlanRequest)
        return await reply(await offload.heavy(lambda: service.plan(
            body.request, provider=body.provider, model=body.model, run=body.run, answers=body.answers,
            workflow=body.workflow)))

    @app.post("/api/validate", openapi_extra=_body_doc(None))
    async def api_validate(request: Request) -> Response:
        body = await read_json(request)
        workflow = body.get("workflow", body) if isinstance(body, dict) else body
        if not isinstance(workflow, dict | str):
            raise BadRequest("send a workflow: an object, or {\"workflow\": ...}, or the text form as a string")
        return await reply(await offload.heavy(lambda: service.validate(workflow)))

    @app.get("/api/tools")
    async def api_tools() -> Response:
        tools = await offload.light(service.list_tools)
        return await reply([t.model_dump(exclude={"workflow"}) for t in tools])

    @app.post("/api/tools", openapi_extra=_body_doc(WorkflowTool))
    async def api_save_tool(request: Request) -> Response:
        tool: WorkflowTool = await read_json(request, WorkflowTool)
        saved = await offload.heavy(lambda: service.save_tool(tool))
        if mcp is not None:
            from mcp_server.mcp_app import register_workflow_tool

            register_workflow_tool(mcp, service, saved)
        return await reply(saved.model_dump(exclude={"workflow"}))

    @app.post("/api/tools/{name}", openapi_extra=_body_doc(None))
    async def api_call_tool(name: str, request: Request) -> Response:
        args = await read_object(request)
        job = await offload.light(lambda: service.call_tool(name, args))
        return await reply(service.job_summary(job))

    @app.get("/api/jobs/{job_id}")
    async def api_job(job_id: str) -> Response:
        job = await offload.light(lambda: service.get_job(job_id))
        return await reply(service.job_summary(job))

    @app.post("/api/comfyui/refresh")
    async def api_comfyui_refresh() -> Response:
        return await reply(await offload.heavy(service.refresh_comfyui))


class ProgressStates:
    """ComfyUI's `progress_state` messages: per prompt, every node that has started, with its state
    (running, finished, error) and progress; rebuilt from the execution events one websocket receives."""

    def __init__(self) -> None:
        self._prompts: dict[str, dict[str, dict[str, Any]]] = {}

    def update(self, kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Apply one event; the progress_state message to send, or None when nothing changed."""
        prompt_id = self.changed(kind, data)
        return self.snapshot(prompt_id) if prompt_id is not None else None

    def changed(self, kind: str, data: dict[str, Any]) -> str | None:
        """Apply one event without building a message: the prompt whose state changed, or None."""
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return None
        if kind == "executing" and data.get("node") is None:
            self._prompts.pop(prompt_id, None)
            return None
        nodes = self._prompts.setdefault(prompt_id, {})
        if kind == "execution_start":
            nodes.clear()
            return None
        return prompt_id if self._apply(kind, data, prompt_id, nodes) else None

    def snapshot(self, prompt_id: str) -> dict[str, Any] | None:
        """The progress_state message for a prompt's current state (None once it has finished)."""
        nodes = self._prompts.get(prompt_id)
        if nodes is None:
            return None
        return {"type": "progress_state", "data": {"prompt_id": prompt_id,
                                                   "nodes": {k: dict(v) for k, v in nodes.items()}}}

    @staticmethod
    def _apply(kind: str, data: dict[str, Any], prompt_id: str, nodes: dict[str, dict[str, Any]]) -> bool:
        def node(node_id: Any) -> dict[str, Any]:
            key = str(node_id)
            return nodes.setdefault(key, {"value": 0.0, "max": 1.0, "state": "pending", "node_id": key,
                                          "prompt_id": prompt_id, "display_node_id": key,
                                          "parent_node_id": None, "real_node_id": key})

        if kind == "executing" and data.get("node") is not None:
            node(data["node"]).update(state="running", value=0.0, max=1.0)
        elif kind == "progress" and data.get("node") is not None:
            node(data["node"]).update(state="running", value=float(data.get("value") or 0),
                                      max=float(data.get("max") or 1))
        elif kind == "executed" and data.get("node") is not None:
            entry = node(data["node"])
            entry.update(state="finished", value=entry["max"])
        elif kind == "execution_cached" and data.get("nodes"):
            for node_id in data["nodes"]:
                node(node_id).update(state="finished", value=1.0, max=1.0)
        elif kind == "execution_error" and data.get("node_id") is not None:
            node(data["node_id"])["state"] = "error"
        else:
            return False
        return True


def _ws_route(app: FastAPI, service: NodeWeaverService, *, token: str | None, loopback: bool,
              allowed: set[str]) -> None:
    """/ws: ComfyUI's progress messages, each client seeing its own prompts' events."""

    @app.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        problem = check_request(ws.headers, ws.query_params, token, loopback, allowed,
                                scheme=ws.scope.get("scheme", "ws"))
        if problem:
            await ws.close(code=4401 if problem[0] == 401 else 4403)
            return
        client_id = ws.query_params.get("clientId") or uuid.uuid4().hex
        await ws.accept()
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue = asyncio.Queue()
        owners: dict[str, str | None] = {}

        progress = ProgressStates()
        lock = threading.Lock()  # the executor thread updates the states, the sender snapshots them
        queued: set[str] = set()  # prompts with a progress_state marker waiting in the outbox

        def forward(event) -> None:
            prompt_id = event.data.get("prompt_id")
            if prompt_id not in owners:
                owners[prompt_id] = service.client_of(prompt_id) if prompt_id else None
            owner = owners[prompt_id]
            finished = event.type == "executing" and event.data.get("node") is None
            if owner in (None, client_id):
                with lock:  # one marker per prompt in the outbox: states coalesce while the socket is busy
                    final = progress.snapshot(prompt_id) if finished and prompt_id in queued else None
                    changed = progress.changed(event.type, event.data)
                    if changed is not None and changed not in queued:
                        queued.add(changed)
                        loop.call_soon_threadsafe(outbox.put_nowait, ("progress_state", changed))
                if final is not None:  # the last state goes out before executing(node=None), as ComfyUI's
                    loop.call_soon_threadsafe(outbox.put_nowait, final)
                loop.call_soon_threadsafe(outbox.put_nowait, event.to_comfy())
            if finished:  # the job queue's last word on this prompt (sent after its history is stored)
                owners.pop(prompt_id, None)

        async def send(scope: anyio.CancelScope) -> None:
            try:
                remaining = await anyio.to_thread.run_sync(service.queue_remaining)
                await ws.send_text(encode_json({"type": "status", "data": {"status": {"exec_info": {
                    "queue_remaining": remaining}}, "sid": client_id}}).decode("utf-8"))
                while True:
                    message = await outbox.get()
                    if isinstance(message, tuple):  # a progress_state marker: the prompt's state as of now
                        with lock:
                            queued.discard(message[1])
                            message = progress.snapshot(message[1])
                        if message is None:
                            continue
                    await ws.send_text(encode_json(message).decode("utf-8"))
            except (WebSocketDisconnect, RuntimeError):
                scope.cancel()

        async def receive(scope: anyio.CancelScope) -> None:
            """Clients send nothing we need, but reading is how a gone client (or a server shutting down) is
            noticed: without it the sender would wait on an empty outbox forever and hold the server up."""
            try:
                while (await ws.receive()).get("type") != "websocket.disconnect":
                    pass
            except (WebSocketDisconnect, RuntimeError):
                pass
            scope.cancel()

        unsubscribe = service.bus.subscribe(forward)
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(send, group.cancel_scope)
                group.start_soon(receive, group.cancel_scope)
        finally:
            unsubscribe()


def _docs_routes(app: FastAPI) -> None:
    """/docs with Swagger UI served from the swagger_ui_bundle package: it works offline."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_STATIC, StaticFiles(directory=swagger_ui_path), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        token = request.query_params.get("token")  # the guard has checked it; the page needs it for the schema
        openapi_url = (app.openapi_url or "/openapi.json") + (f"?{urlencode({'token': token})}" if token else "")
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} API",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
                                   oauth2_redirect_url=None, swagger_ui_parameters={"validatorUrl": None})
