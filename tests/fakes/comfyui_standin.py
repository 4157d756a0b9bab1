"""A stand-in for a ComfyUI server: its HTTP API and /ws, replaying what a real ComfyUI v0.3.64 answered.

Nothing is executed. Every answer comes from tests/data/comfyui_recorded (see record.py there): a submitted
prompt equal to a recorded one replays that run's websocket messages (the success run for any other prompt)
with the new prompt id and client id put in; the recorded invalid prompt gets the recorded 400. Prompts run
one at a time from a queue, as ComfyUI's do, so /queue, queue_remaining, deleting a queued prompt and
/interrupt behave as there. The recorded interrupted run holds before its `execution_interrupted` until an
/interrupt names it. Knobs for tests: `drop_classes` (a server without some nodes), `extra_load` (other
users' prompts counted in queue_remaining), `occupy()` (a foreign prompt holding the queue until
`release()`), `die_at` (the server dies when its replay reaches a message of that type), `cut_at` (every
websocket is dropped there once, and refused until the run ends: the rest of its messages are lost, /history
has them). POST /upload/image keeps what is uploaded in `uploads` (name -> bytes) and lists it among
LoadImage's choices, as ComfyUI lists its input folder.

Run it alone: python -m tests.fakes.comfyui_standin --port 8188
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import struct
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

RECORDED = Path(__file__).resolve().parents[1] / "data" / "comfyui_recorded"


def load(name: str) -> Any:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


class Recording:
    """The recorded answers, read once."""

    def __init__(self) -> None:
        self.object_info: dict[str, Any] = load("object_info.json")
        self.system_stats: dict[str, Any] = load("system_stats.json")
        self.models: dict[str, Any] = load("models.json")
        self.invalid: dict[str, Any] = load("prompt_400.json")
        self.runs = {name: load(f"run_{name}.json") for name in ("success", "error", "interrupted")}
        self.view_name: dict[str, Any] = load("meta.json")["view_output"]
        self.view_bytes = (RECORDED / "view_output.png").read_bytes()

    def run_for(self, prompt: dict[str, Any]) -> dict[str, Any]:
        for run in self.runs.values():
            if run["prompt"] == prompt:
                return run
        return self.runs["success"]


def substitute(value: Any, old: str, new: str) -> Any:
    """`value` with every occurrence of the recorded id `old` replaced by `new` (keys and strings)."""
    return json.loads(json.dumps(value).replace(old, new))


class _Item:
    def __init__(self, number: int, prompt_id: str, prompt: dict, extra_data: dict, foreign: bool = False):
        self.number, self.prompt_id, self.prompt, self.extra_data = number, prompt_id, prompt, extra_data
        self.foreign = foreign
        self.interrupt = asyncio.Event()

    def row(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, []]


class ComfyUIStandin:
    """The stand-in on 127.0.0.1 (a uvicorn server in a thread); `url` once started."""

    def __init__(self, *, drop_classes: tuple[str, ...] = (), extra_load: int = 0, step_delay: float = 0.005,
                 die_at: str | None = None, cut_at: str | None = None, previews: bool = True,
                 require_header: tuple[str, str] | None = None, port: int | None = None) -> None:
        self.recording = Recording()
        self.drop_classes = set(drop_classes)
        self.extra_load = extra_load
        self.step_delay = step_delay
        self.die_at = die_at
        self.cut_at = cut_at
        self.previews = previews
        self.require_header = require_header
        self._cut = False
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: Counter = Counter()          # "POST /prompt" -> count
        self.submitted: list[dict[str, Any]] = []  # the bodies of accepted /prompt requests
        self.deleted: list[str] = []
        self.interrupts: list[str | None] = []
        self.uploads: dict[str, bytes] = {}       # "subfolder/name" (or "name") -> the uploaded bytes
        self.upload_forms: list[dict[str, str]] = []  # the form fields of each upload
        self.dead = False
        self._sockets: dict[str, WebSocket] = {}
        self._pending: list[_Item] = []
        self._running: _Item | None = None
        self._history: dict[str, Any] = {}
        self._number = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._release: asyncio.Event | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ---- life -------------------------------------------------------------------------------------------
    def start(self) -> ComfyUIStandin:
        import uvicorn

        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="critical",
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name=f"standin-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError(f"the ComfyUI stand-in did not start on {self.url}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ComfyUIStandin:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _die(self) -> None:
        """As a killed process: every socket dropped, then nothing listens on the port."""
        self.dead = True
        await self._drop_sockets()
        self._server.should_exit = True
        self._server.force_exit = True

    async def _drop_sockets(self) -> None:
        sockets, self._sockets = list(self._sockets.values()), {}
        for ws in sockets:
            with contextlib.suppress(RuntimeError):  # a socket already closing needs no close
                await ws.close(code=1011)

    def occupy(self) -> None:
        """Put a foreign prompt at the head of the queue; it holds until release()."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._occupy)

    def release(self) -> None:
        assert self._loop is not None and self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    def _occupy(self) -> None:
        self._number += 1
        self._pending.insert(0, _Item(self._number, "foreign-" + uuid.uuid4().hex, {}, {}, foreign=True))
        assert self._wake is not None
        self._wake.set()

    # ---- the queue --------------------------------------------------------------------------------------
    def queue_remaining(self) -> int:
        return len(self._pending) + (self._running is not None) + self.extra_load

    async def _worker(self) -> None:
        assert self._wake is not None and self._release is not None
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._running = self._pending.pop(0)
            try:
                if self._running.foreign:
                    await self._release.wait()
                    self._release.clear()
                else:
                    await self._replay(self._running)
            finally:
                self._running = None
            await self._broadcast_status()

    async def _replay(self, item: _Item) -> None:
        run = self.recording.run_for(item.prompt)
        client_id = str(item.extra_data.get("client_id", ""))
        messages = substitute(run["messages"], run["prompt_id"], item.prompt_id)
        for message in messages[1:]:  # the first is the greeting of the recorder's own connection
            if message["type"] == "execution_interrupted":
                await item.interrupt.wait()  # held until an /interrupt names this prompt
            if message["type"] == "status":
                message = {"type": "status", "data": {"status": self._queue_info()}}
            if self.die_at is not None and message["type"] == self.die_at:
                await self._die()
                return
            if self.cut_at is not None and message["type"] == self.cut_at:
                self.cut_at, self._cut = None, True  # sockets refused until this run ends: its end is lost
                await self._drop_sockets()
            await self._send(client_id, message)
            if self.previews and message["type"] == "progress":
                await self._send_preview(client_id)
            await asyncio.sleep(self.step_delay)
        history = substitute(run["history"][run["prompt_id"]], run["prompt_id"], item.prompt_id)
        history["prompt"] = [item.number, item.prompt_id, item.prompt, item.extra_data, history["prompt"][4]]
        self._history[item.prompt_id] = history
        self._cut = False

    async def _send(self, client_id: str, message: dict[str, Any]) -> None:
        ws = self._sockets.get(client_id)
        if ws is None:
            return
        try:
            await ws.send_text(json.dumps(message))
        except (RuntimeError, WebSocketDisconnect, OSError):
            self._sockets.pop(client_id, None)

    async def _send_preview(self, client_id: str) -> None:
        """A binary preview frame as ComfyUI frames them (server.py encode_bytes/send_image): event 1
        (PREVIEW_IMAGE), image type 2 (PNG), the image."""
        ws = self._sockets.get(client_id)
        if ws is not None:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await ws.send_bytes(struct.pack(">II", 1, 2) + self.recording.view_bytes)

    async def _broadcast_status(self) -> None:
        for client_id in list(self._sockets):
            await self._send(client_id, {"type": "status", "data": {"status": self._queue_info()}})

    def _queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue_remaining()}}

    # ---- the app ----------------------------------------------------------------------------------------
    def app(self) -> FastAPI:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan(_app: FastAPI):
            self._loop = asyncio.get_running_loop()
            self._wake, self._release = asyncio.Event(), asyncio.Event()
            worker = asyncio.create_task(self._worker())
            yield
            worker.cancel()

        app = FastAPI(lifespan=lifespan)

        @app.middleware("http")
        async def count(request: Request, call_next: Any) -> Any:
            self.calls[f"{request.method} {request.url.path}"] += 1
            if not self._authorized(request.headers):
                return Response(status_code=401)  # as a proxy in front of ComfyUI answers
            return await call_next(request)

        self._read_routes(app)
        self._write_routes(app)
        return app

    def _authorized(self, headers: Any) -> bool:
        return self.require_header is None or headers.get(self.require_header[0]) == self.require_header[1]

    def _read_routes(self, app: FastAPI) -> None:
        rec = self.recording

        @app.get("/object_info")
        async def object_info() -> Any:
            info = {k: v for k, v in copy.deepcopy(rec.object_info).items() if k not in self.drop_classes}
            if "LoadImage" in info and self.uploads:
                choices = info["LoadImage"]["input"]["required"]["image"]
                choices[0] = sorted(set(choices[0]) | {n for n in self.uploads if "/" not in n})
            return info

        @app.get("/system_stats")
        async def system_stats() -> Any:
            return rec.system_stats

        @app.get("/models")
        async def models() -> Any:
            return rec.models["folders"]

        @app.get("/models/{folder}")
        async def models_of(folder: str) -> Any:
            if folder not in rec.models["folders"]:
                return Response(status_code=404)
            return rec.models.get(folder, [])

        @app.get("/prompt")
        async def prompt_info() -> Any:
            return self._queue_info()

        @app.get("/queue")
        async def queue_state() -> Any:
            return {"queue_running": [self._running.row()] if self._running else [],
                    "queue_pending": [item.row() for item in self._pending]}

        @app.get("/history/{prompt_id}")
        async def history(prompt_id: str) -> Any:
            return {prompt_id: self._history[prompt_id]} if prompt_id in self._history else {}

        @app.get("/view")
        async def view(filename: str, subfolder: str = "", type: str = "output") -> Any:
            wanted = rec.view_name
            if (filename, subfolder, type) != (wanted["filename"], wanted["subfolder"], wanted["type"]):
                return Response(status_code=404)
            return Response(content=rec.view_bytes, media_type="image/png")

    def _write_routes(self, app: FastAPI) -> None:
        @app.post("/prompt")
        async def post_prompt(request: Request) -> Any:
            body = await request.json()
            if "prompt" not in body:
                error = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided",
                         "extra_info": {}}
                return JSONResponse({"error": error, "node_errors": {}}, status_code=400)
            if body["prompt"] == self.recording.invalid["prompt"]:
                return JSONResponse(self.recording.invalid["response"], status_code=400)
            self.submitted.append(copy.deepcopy(body))
            self._number += 1
            prompt_id = str(body.get("prompt_id") or uuid.uuid4())
            extra = dict(body.get("extra_data") or {})
            if "client_id" in body:
                extra["client_id"] = body["client_id"]
            self._pending.append(_Item(self._number, prompt_id, body["prompt"], extra))
            assert self._wake is not None
            self._wake.set()
            await self._broadcast_status()
            return {"prompt_id": prompt_id, "number": self._number, "node_errors": {}}

        @app.post("/upload/image")
        async def upload_image(request: Request) -> Any:
            form = await request.form()
            image = form.get("image")
            if image is None or isinstance(image, str) or not image.filename:
                return Response(status_code=400)  # as ComfyUI answers an upload without a file
            subfolder = str(form.get("subfolder") or "")
            self.upload_forms.append({k: str(v) for k, v in form.items() if k != "image"})
            self.uploads[f"{subfolder}/{image.filename}" if subfolder else image.filename] = await image.read()
            return {"name": image.filename, "subfolder": subfolder, "type": str(form.get("type") or "input")}

        @app.post("/queue")
        async def post_queue(request: Request) -> Any:
            body = await request.json()
            for prompt_id in body.get("delete") or []:
                self.deleted.append(prompt_id)
                self._pending = [item for item in self._pending if item.prompt_id != prompt_id]
            return Response(status_code=200)

        @app.post("/interrupt")
        async def post_interrupt(request: Request) -> Any:
            body = await request.json() if await request.body() else {}
            prompt_id = body.get("prompt_id")
            self.interrupts.append(prompt_id)
            if self._running is not None and prompt_id in (None, self._running.prompt_id):
                self._running.interrupt.set()
            return Response(status_code=200)

        @app.websocket("/ws")
        async def ws(websocket: WebSocket) -> None:
            if self._cut or not self._authorized(websocket.headers):
                await websocket.close(code=1013)  # refused before the handshake completes (HTTP 403)
                return
            await websocket.accept()
            sid = websocket.query_params.get("clientId") or uuid.uuid4().hex
            self._sockets[sid] = websocket
            await websocket.send_text(json.dumps({"type": "status",
                                                  "data": {"status": self._queue_info(), "sid": sid}}))
            try:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
            finally:
                if self._sockets.get(sid) is websocket:
                    del self._sockets[sid]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a ComfyUI stand-in replaying recorded answers")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--drop-class", action="append", default=[])
    args = parser.parse_args(argv)
    standin = ComfyUIStandin(port=args.port, drop_classes=tuple(args.drop_class)).start()
    print(standin.url, flush=True)
    try:
        while standin._thread is not None and standin._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
