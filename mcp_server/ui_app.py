"""ComfyUI's own frontend (PyPI `comfyui-frontend-package`, the `[ui]` extra) served by NodeWeaver at `/`.

The page calls ComfyUI's endpoints under `/api/...` (ComfyUI answers each route with and without that prefix),
so every ComfyUI route of the app gets its `/api` twin here, and the endpoints the page needs besides the queue
ones are answered as ComfyUI's server.py and app/*.py answer them: settings and user files (under
data_dir/user/default, paths kept inside it), users, i18n, extensions (NodeWeaver's own Describe panel among
them), embeddings, model folders, feature flags, and the template library (the comfyui-workflow-templates-json
index and workflows; thumbnails the package does not ship are drawn as titled placeholders)."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.staticfiles import StaticFiles

from mcp_server.http_app import read_json, reply
from mcp_server.service import NodeWeaverService
from runtime import folders
from runtime.errors import BadRequest, NodeWeaverError, NotFound

WEB_DIR = Path(__file__).resolve().parent / "web"
EXTENSION_NAME = "nodeweaver"
FRONTEND_PIN = "comfyui-frontend-package==1.27.10"  # the version ComfyUI 0.3.64 requires
SETTINGS_FILE = "comfy.settings.json"
# What a user who has saved nothing gets. ComfyUI's release notes do not describe NodeWeaver, and frontend
# 1.27.10 throws at load when Comfy.Canvas.NavigationMode is "legacy" (its onChange sets two settings not yet
# registered): "custom" with those two at their defaults (panning, zoom) navigates exactly as "legacy" does.
SETTING_DEFAULTS: dict[str, Any] = {"Comfy.Notification.ShowVersionUpdates": False,
                                    "Comfy.Canvas.NavigationMode": "custom"}
# User files the page always asks for: one that was never saved reads as empty, not as a 404
USER_FILE_DEFAULTS: dict[str, tuple[str, str]] = {"user.css": ("", "text/css"),
                                                  "comfy.templates.json": ("[]", "application/json")}
NO_CACHE = {"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0"}
# ComfyUI routes that are not its queue API: they get no /api twin (they are pages, assets or NodeWeaver's)
_NO_TWIN = ("/api", "/docs", "/mcp", "/openapi.json")


def frontend_dir() -> Path | None:
    """The installed frontend's static folder, or None when the `[ui]` extra is not installed."""
    try:
        import comfyui_frontend_package
    except ImportError:
        return None
    static = Path(comfyui_frontend_package.__file__).resolve().parent / "static"
    return static if (static / "index.html").is_file() else None


def templates_dir() -> Path | None:
    """The template library's folder (index.json and one JSON per template), or None when absent."""
    try:
        import comfyui_workflow_templates_json
    except ImportError:
        return None
    found = Path(comfyui_workflow_templates_json.__file__).resolve().parent / "templates"
    return found if (found / "index.json").is_file() else None


def register_ui(app: FastAPI, service: NodeWeaverService, offload: Any) -> None:
    """Everything the frontend needs. Call it last in create_app: the frontend's files are mounted at `/`,
    which matches every path, so it must come after every other route and mount."""
    _api_twins(app)
    both = _Both(app)
    _settings_routes(both, service, offload)
    _userdata_routes(both, service, offload)
    _frontend_info_routes(both, service, offload)
    _template_routes(app, offload)
    _convert_routes(app, service, offload)
    app.mount(f"/extensions/{EXTENSION_NAME}", StaticFiles(directory=WEB_DIR), name="nodeweaver-extension")
    _page_routes(app)


class _Both:
    """Registers a route at its ComfyUI path and at the `/api` twin the frontend calls."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def route(self, path: str, methods: list[str]):
        def register(fn):
            for prefix in ("", "/api"):
                self.app.add_api_route(prefix + path, fn, methods=methods, include_in_schema=prefix == "")
            return fn

        return register


def _api_twins(app: FastAPI) -> None:
    """`/api/prompt`, `/api/queue`, `/api/ws` …: each ComfyUI route already on the app, under /api too."""
    taken = {(r.path, m) for r in app.router.routes if isinstance(r, APIRoute) for m in r.methods}
    for route in list(app.router.routes):
        if isinstance(route, APIRoute) and not route.path.startswith(_NO_TWIN):
            methods = [m for m in route.methods if ("/api" + route.path, m) not in taken]
            if methods:
                app.add_api_route("/api" + route.path, route.endpoint, methods=methods, include_in_schema=False,
                                  openapi_extra=route.openapi_extra)
        elif isinstance(route, APIWebSocketRoute) and route.path == "/ws":
            app.add_api_websocket_route("/api/ws", route.endpoint)


# ---- settings and user files (ComfyUI's app/app_settings.py and app/user_manager.py) ----------------------
def user_root(service: NodeWeaverService) -> Path:
    """The one user's folder (ComfyUI without --multi-user): data_dir/user/default."""
    root = service.settings.data_dir / "user" / "default"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _user_path(service: NodeWeaverService, name: str) -> Path:
    """A user file's path, refused (403) when the name would leave the user's folder."""
    return folders.safe_join(user_root(service), unquote(name))


def _read_settings(service: NodeWeaverService) -> dict[str, Any]:
    path = user_root(service) / SETTINGS_FILE
    if not path.is_file():
        return dict(SETTING_DEFAULTS)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NodeWeaverError(f"the settings file {path} cannot be read: {exc}", kind="settings_unreadable",
                              status=500) from None
    return {**SETTING_DEFAULTS, **data} if isinstance(data, dict) else dict(SETTING_DEFAULTS)


def _write_settings(service: NodeWeaverService, settings: dict[str, Any]) -> None:
    path = user_root(service) / SETTINGS_FILE
    spare = path.with_suffix(".tmp")
    spare.write_text(json.dumps(settings, indent=4, ensure_ascii=False), encoding="utf-8")
    os.replace(spare, path)  # a reader never sees half a file


def _settings_routes(both: _Both, service: NodeWeaverService, offload: Any) -> None:
    @both.route("/settings", ["GET"])
    async def get_settings() -> Response:
        return await reply(await offload.light(lambda: _read_settings(service)))

    @both.route("/settings/{setting_id}", ["GET"])
    async def get_setting(setting_id: str) -> Response:
        return await reply((await offload.light(lambda: _read_settings(service))).get(setting_id))

    @both.route("/settings", ["POST"])
    async def post_settings(request: Request) -> Response:
        changes = await read_json(request)
        if not isinstance(changes, dict):
            raise BadRequest("the settings must be a JSON object of setting id → value")
        await offload.light(lambda: _write_settings(service, {**_read_settings(service), **changes}))
        return await reply({})

    @both.route("/settings/{setting_id}", ["POST"])
    async def post_setting(setting_id: str, request: Request) -> Response:
        value = await read_json(request)
        await offload.light(lambda: _write_settings(service, {**_read_settings(service), setting_id: value}))
        return await reply({})

    @both.route("/users", ["GET"])
    async def get_users() -> Response:
        await offload.light(lambda: user_root(service))
        return await reply({"storage": "server", "migrated": True})


def _file_info(path: Path, root: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": path.relative_to(root).as_posix(), "size": stat.st_size, "modified": stat.st_mtime,
            "created": stat.st_ctime}


def _list_userdata(service: NodeWeaverService, directory: str, recurse: bool, full_info: bool,
                   split: bool) -> list[Any]:
    """ComfyUI's GET /userdata?dir=: the files in one of the user's folders (a missing folder is empty)."""
    if not directory:
        raise BadRequest("dir is required (a folder in the user's data, e.g. workflows)", kind="no_directory")
    base = _user_path(service, directory)
    if not base.is_dir():
        return []
    found = sorted(p for p in (base.rglob("*") if recurse else base.iterdir()) if p.is_file())
    if full_info:
        return [_file_info(p, base) for p in found]
    relative = [p.relative_to(base).as_posix() for p in found]
    return [[r, *r.split("/")] for r in relative] if split else relative


def _raw_file_names(request: Request, prefix_len: int) -> list[str]:
    """The URL-encoded names after /userdata/ as sent: a file name's `/` comes encoded (%2F), so the raw
    path keeps `<file>/move/<dest>` apart from a file in a subfolder."""
    raw = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
    return raw[prefix_len:].split("/")


def _userdata_names(request: Request) -> tuple[str, str | None]:
    """(file, move destination or None) from the request's path."""
    path = request.url.path
    prefix_len = len("/api/userdata/") if path.startswith("/api/") else len("/userdata/")
    parts = _raw_file_names(request, prefix_len)
    if len(parts) == 3 and parts[1] == "move" and request.method == "POST":
        return unquote(parts[0]), unquote(parts[2])
    return unquote("/".join(parts)), None


def _save_userdata(service: NodeWeaverService, name: str, data: bytes, overwrite: bool,
                   full_info: bool) -> Any:
    path = _user_path(service, name)
    if path.exists() and not overwrite:
        raise NodeWeaverError(f"the user file {name!r} already exists", kind="file_exists", status=409)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    root = user_root(service)
    return _file_info(path, root) if full_info else path.relative_to(root).as_posix()


def _move_userdata(service: NodeWeaverService, name: str, dest: str, overwrite: bool, full_info: bool) -> Any:
    source, target = _user_path(service, name), _user_path(service, dest)
    if not source.is_file():
        raise NotFound(f"no user file {name!r}", kind="file_not_found")
    if target.exists() and not overwrite:
        raise NodeWeaverError(f"the user file {dest!r} already exists", kind="file_exists", status=409)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    root = user_root(service)
    return _file_info(target, root) if full_info else target.relative_to(root).as_posix()


def _existing_userdata(service: NodeWeaverService, name: str) -> Path:
    path = _user_path(service, name)
    if not path.is_file():
        raise NotFound(f"no user file {name!r}", kind="file_not_found")
    return path


def _flag(request: Request, name: str, default: str) -> bool:
    return request.query_params.get(name, default).lower() == "true"


def _userdata_routes(both: _Both, service: NodeWeaverService, offload: Any) -> None:
    @both.route("/userdata", ["GET"])
    async def list_userdata(request: Request) -> Response:
        q = request.query_params
        listed = await offload.light(lambda: _list_userdata(
            service, q.get("dir", ""), _flag(request, "recurse", ""), _flag(request, "full_info", ""),
            _flag(request, "split", "")))
        return await reply(listed)

    @both.route("/userdata/{name:path}", ["GET"])
    async def get_userdata(request: Request) -> Response:
        name, _ = _userdata_names(request)
        if name in USER_FILE_DEFAULTS and not (await offload.light(lambda: _user_path(service, name))).is_file():
            text, media_type = USER_FILE_DEFAULTS[name]
            return Response(text, media_type=media_type, headers=NO_CACHE)
        return FileResponse(await offload.light(lambda: _existing_userdata(service, name)), headers=NO_CACHE)

    @both.route("/userdata/{name:path}", ["POST"])
    async def post_userdata(request: Request) -> Response:
        name, dest = _userdata_names(request)
        overwrite = request.query_params.get("overwrite", "true") != "false"
        full_info = _flag(request, "full_info", "false")
        if dest is not None:
            return await reply(await offload.light(
                lambda: _move_userdata(service, name, dest, overwrite, full_info)))
        data = await request.body()
        return await reply(await offload.light(lambda: _save_userdata(service, name, data, overwrite, full_info)))

    @both.route("/userdata/{name:path}", ["DELETE"])
    async def delete_userdata(request: Request) -> Response:
        name, _ = _userdata_names(request)
        path = await offload.light(lambda: _existing_userdata(service, name))
        await offload.light(path.unlink)
        return Response(status_code=204)


# ---- what the page asks the server about ------------------------------------------------------------------
def extension_files() -> list[str]:
    """ComfyUI's GET /extensions: the frontend's own extension scripts and NodeWeaver's."""
    found: list[str] = []
    static = frontend_dir()
    if static is not None:
        found += ["/" + p.relative_to(static).as_posix() for p in sorted((static / "extensions").rglob("*.js"))]
    found += [f"/extensions/{EXTENSION_NAME}/{p.relative_to(WEB_DIR).as_posix()}" for p in sorted(WEB_DIR.rglob("*.js"))]
    return found


def _model_folder_list() -> list[dict[str, Any]]:
    """ComfyUI's GET /experiment/models: each model kind with the folders searched for it."""
    return [{"name": kind, "folders": [str(f) for f in folders.model_folders(kind)]}
            for kind in folders.model_kinds()]


def _model_folder_files(kind: str) -> list[dict[str, Any]]:
    """ComfyUI's GET /experiment/models/{folder}: the installed files and the folder each lies in."""
    kind = folders.canonical_kind(kind)
    if kind not in folders.model_kinds():
        raise NotFound(f"no model folder kind {kind!r}", kind="unknown_model_folder")
    found = []
    for index, folder in enumerate(folders.model_folders(kind)):
        for name in folders.model_files(kind):
            if (folder / name).exists() and all(f["name"] != name for f in found):
                found.append({"name": name, "pathIndex": index})
    return found


def _embeddings() -> list[str]:
    if "embeddings" not in folders.model_kinds():
        return []
    return [name.rsplit(".", 1)[0] for name in folders.model_files("embeddings")]


def _frontend_info_routes(both: _Both, service: NodeWeaverService, offload: Any) -> None:
    @both.route("/extensions", ["GET"])
    async def extensions() -> Response:
        return await reply(await offload.light(extension_files))

    @both.route("/i18n", ["GET"])
    async def i18n() -> Response:
        return await reply({})  # translations shipped by custom node packs' locales folders: none here

    @both.route("/embeddings", ["GET"])
    async def embeddings() -> Response:
        return await reply(await offload.light(_embeddings))

    @both.route("/features", ["GET"])
    async def features() -> Response:
        return await reply({"supports_preview_metadata": False,
                            "max_upload_size": service.settings.server.max_body_bytes,
                            "nodeweaver_ui_convert": ui_converter() is not None})

    @both.route("/experiment/models", ["GET"])
    async def experiment_models() -> Response:
        return await reply(await offload.light(_model_folder_list))

    @both.route("/experiment/models/{folder}", ["GET"])
    async def experiment_model_files(folder: str) -> Response:
        return await reply(await offload.light(lambda: _model_folder_files(folder)))

    @both.route("/workflow_templates", ["GET"])
    async def workflow_templates() -> Response:
        return await reply({})  # templates shipped by custom node packs: none; the library is /templates/

    @both.route("/free", ["POST"])
    async def free() -> Response:
        return await reply({})  # models are loaded per job and released with it: nothing held to free


# ---- API JSON → the frontend's own (UI) form -----------------------------------------------------------------
def ui_converter() -> Callable[[dict[str, Any], Any], dict[str, Any]] | None:
    """compiler.ui_export.to_ui_workflow when this install has it (the Describe panel falls back to the
    frontend's own API loader without it)."""
    try:
        from compiler.ui_export import to_ui_workflow
    except ImportError:
        return None
    return to_ui_workflow


def _convert(service: NodeWeaverService, workflow: Any) -> dict[str, Any]:
    convert = ui_converter()
    if convert is None:
        raise NodeWeaverError("this install cannot convert workflows to the UI form (compiler.ui_export)",
                              kind="ui_convert_unavailable", status=501)
    return {"workflow": convert(service.load(workflow), service.registry)}


def _convert_routes(app: FastAPI, service: NodeWeaverService, offload: Any) -> None:
    @app.post("/api/ui/convert", summary="A workflow (API JSON, UI JSON or text form) in ComfyUI's UI form")
    async def ui_convert(request: Request) -> Response:
        body = await read_json(request)
        workflow = body.get("workflow", body) if isinstance(body, dict) else body
        if not isinstance(workflow, dict | str):
            raise BadRequest("send a workflow: an object, or {\"workflow\": ...}, or the text form as a string")
        return await reply(await offload.heavy(lambda: _convert(service, workflow)))


# ---- the template library (ComfyUI serves the templates package at /templates) ----------------------------
_THUMB_TYPES = {"webp", "png", "jpg", "jpeg", "gif"}


def _template_titles(root: Path) -> dict[str, str]:
    titles: dict[str, str] = {}
    for group in json.loads((root / "index.json").read_text(encoding="utf-8")):
        for item in group.get("templates", []):
            titles[item.get("name", "")] = item.get("title") or item.get("name", "")
    return titles


def placeholder_thumbnail(title: str) -> str:
    """An SVG card with the template's title, for thumbnails the JSON-only package does not ship."""
    words, lines, line = title.split(), [], ""
    for word in words:
        if len(line) + len(word) > 22 and line:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    lines.append(line)
    text = "".join(f'<tspan x="160" dy="{0 if i == 0 else 30}">{html.escape(t)}</tspan>'
                   for i, t in enumerate(lines[:4]))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="320" height="320" viewBox="0 0 320 320">'
            '<rect width="320" height="320" fill="#2b2f38"/><text x="160" y="'
            f'{160 - 15 * (min(len(lines), 4) - 1)}" fill="#e6e6e6" font-family="sans-serif" font-size="22" '
            f'text-anchor="middle">{text}</text></svg>')


def _template_file(name: str) -> Response:
    root = templates_dir()
    if root is None:
        raise NotFound("the template library is not installed (pip install comfyui-workflow-templates-json)",
                       kind="templates_not_installed")
    path = folders.safe_join(root, name)
    if path.is_file():
        return FileResponse(path)
    stem, _, suffix = name.rpartition(".")
    titles = _template_titles(root)
    base = stem.rsplit("-", 1)[0] if stem.rsplit("-", 1)[-1].isdigit() else stem
    if suffix.lower() in _THUMB_TYPES and base in titles:
        return Response(placeholder_thumbnail(titles[base]), media_type="image/svg+xml",
                        headers={"Cache-Control": "max-age=86400"})
    raise NotFound(f"no template file {name!r}", kind="file_not_found")


def _template_routes(app: FastAPI, offload: Any) -> None:
    @app.get("/templates/{name:path}", include_in_schema=False)
    async def template_file(name: str) -> Response:
        return await offload.light(lambda: _template_file(name))


# ---- the page itself ---------------------------------------------------------------------------------------
def _install_page() -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>NodeWeaver</title></head><body "
            f"style='font-family:sans-serif;max-width:44em;margin:4em auto'><h1>NodeWeaver</h1><p>The web UI "
            f"is ComfyUI's own frontend, which is not installed. Install it with</p><pre>pip install "
            f"'nodeweaver[ui]'</pre><p>(or <code>pip install {FRONTEND_PIN}</code>) and restart "
            f"<code>nodeweaver serve</code>.</p><p>The API is here all the same: <a href='/docs'>/docs</a>, "
            f"<code>POST /api/plan</code>, ComfyUI's <code>/prompt</code>, MCP at <code>/mcp/</code>.</p>"
            f"</body></html>")


def _page_routes(app: FastAPI) -> None:
    static = frontend_dir()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        if static is None:
            return HTMLResponse(_install_page(), headers=NO_CACHE)
        return FileResponse(static / "index.html", headers=NO_CACHE)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        if static is None or not (static / "assets" / "favicon.ico").is_file():
            return Response(status_code=204)
        return FileResponse(static / "assets" / "favicon.ico")

    @app.get("/user.css", include_in_schema=False)
    async def user_css() -> Response:
        return Response("", media_type="text/css", headers=NO_CACHE)  # index.html links it; ComfyUI has none

    if static is not None:
        app.mount("/", StaticFiles(directory=static), name="frontend")
