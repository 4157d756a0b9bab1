"""A client of one ComfyUI server: its HTTP API and its /ws event stream.

Every call has a timeout, and a server that cannot be reached raises BackendUnavailable with its URL, so
nothing above waits forever on a dead server. The websocket reconnects on its own with exponential backoff;
callers read `EventStream.connected` / `down_since` to tell a quiet server from a gone one.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from engine.comfyui.errors import BackendUnavailable, RemoteError, RemoteValidationError
from runtime.errors import BadRequest

log = logging.getLogger(__name__)

VIEW_LIMIT = 1 << 30  # bytes of one fetched output file; a bigger answer is refused, not buffered whole


def normalize_url(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; anything else is a BadRequest."""
    if not isinstance(url, str) or not url.strip():
        raise BadRequest("a ComfyUI URL is required (http://host:port)")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"ComfyUI URL {url!r} must be http:// or https:// with a host", details={"url": url})
    return url.strip().rstrip("/")


class ComfyUIClient:
    """ComfyUI's HTTP API (`/object_info`, `/prompt`, `/queue`, `/interrupt`, `/history`, `/view` …)."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 30.0,
                 connect_timeout: float = 5.0) -> None:
        self.url = normalize_url(url)
        self.headers = dict(headers or {})
        self.timeout = float(timeout)
        self.connect_timeout = min(float(connect_timeout), self.timeout)
        self._http = httpx.Client(base_url=self.url, headers=self.headers, follow_redirects=False,
                                  timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout))

    def __repr__(self) -> str:
        return f"ComfyUIClient({self.url!r})"

    # ---- plumbing -------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, self.connect_timeout))
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # refused, reset, timed out, DNS: the server is not there
            raise self.unavailable(f"{type(exc).__name__}: {exc or 'no answer'}") from exc

    def unavailable(self, why: str) -> BackendUnavailable:
        return BackendUnavailable(f"ComfyUI at {self.url} is unreachable ({why})",
                                  details={"url": self.url, "why": why})

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        self._check(response, path)
        try:
            return response.json()
        except ValueError as exc:
            raise RemoteError(f"ComfyUI at {self.url} answered {path} with a body that is not JSON",
                              details={"url": self.url, "path": path}) from exc

    def _check(self, response: httpx.Response, path: str) -> None:
        if response.status_code >= 400:
            raise RemoteError(f"ComfyUI at {self.url} answered {path} with HTTP {response.status_code}",
                              details={"url": self.url, "path": path, "status": response.status_code,
                                       "body": response.text[:2000]})

    def close(self) -> None:
        self._http.close()

    # ---- reading --------------------------------------------------------------------------------------
    def object_info(self) -> dict[str, Any]:
        """Every node class the server has, as ComfyUI describes them."""
        data = self._json("GET", "/object_info")
        if not isinstance(data, dict):
            raise RemoteError(f"ComfyUI at {self.url}: /object_info is not an object", details={"url": self.url})
        return data

    def models(self, kind: str | None = None) -> list[str]:
        """The model folder kinds (no `kind`), or the files of one kind installed on the server."""
        path = "/models" if kind is None else f"/models/{quote(kind, safe='')}"
        data = self._json("GET", path)
        if not isinstance(data, list):
            raise RemoteError(f"ComfyUI at {self.url}: {path} is not a list", details={"url": self.url})
        return [str(item) for item in data]

    def system_stats(self, timeout: float | None = None) -> dict[str, Any]:
        return self._json("GET", "/system_stats", timeout=timeout)

    def queue_remaining(self) -> int:
        """Prompts running or waiting on the server (ComfyUI's exec_info.queue_remaining)."""
        data = self._json("GET", "/prompt")
        try:
            return int(data["exec_info"]["queue_remaining"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteError(f"ComfyUI at {self.url}: /prompt lacks exec_info.queue_remaining",
                              details={"url": self.url}) from exc

    def queue(self) -> dict[str, list[Any]]:
        """{"queue_running": [...], "queue_pending": [...]}: items are [number, prompt_id, prompt, ...]."""
        data = self._json("GET", "/queue")
        return {"queue_running": list(data.get("queue_running") or []),
                "queue_pending": list(data.get("queue_pending") or [])}

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The server's history entry of one prompt (prompt, outputs, status), None while it has none."""
        data = self._json("GET", f"/history/{quote(prompt_id, safe='')}")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    def view(self, filename: str, subfolder: str = "", folder_type: str = "output",
             limit: int = VIEW_LIMIT) -> bytes:
        """The bytes of one file the server wrote (its /view), at most `limit` of them."""
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        try:
            with self._http.stream("GET", "/view", params=params) as response:
                self._check(response, "/view")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise RemoteError(f"ComfyUI at {self.url}: {filename!r} is over {limit} bytes",
                                          details={"url": self.url, "filename": filename})
                    chunks.append(chunk)
        except httpx.TransportError as exc:
            raise self.unavailable(f"{type(exc).__name__}: {exc or 'no answer'}") from exc
        return b"".join(chunks)

    # ---- acting ---------------------------------------------------------------------------------------
    def queue_prompt(self, prompt: dict[str, Any], *, client_id: str, extra_data: dict[str, Any] | None = None,
                     prompt_id: str | None = None) -> str:
        """POST /prompt; the prompt id. A refused workflow raises RemoteValidationError (node_errors mapped)."""
        body: dict[str, Any] = {"prompt": prompt, "client_id": client_id, "extra_data": dict(extra_data or {})}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        response = self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                data = response.json()
            except ValueError:
                data = {}
            if isinstance(data, dict) and ("error" in data or "node_errors" in data):
                raise RemoteValidationError(self.url, data.get("error"), data.get("node_errors"))
        self._check(response, "/prompt")
        try:
            return str(response.json()["prompt_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteError(f"ComfyUI at {self.url}: /prompt answered without a prompt_id",
                              details={"url": self.url, "body": response.text[:2000]}) from exc

    def upload_image(self, image: Path | str | bytes, name: str, *, overwrite: bool = True) -> str:
        """POST /upload/image (multipart, type input): a file or bytes into the server's input folder as
        `name` ("sub/file.png" goes to that subfolder); the name a LoadImage there refers to it by."""
        parts = PurePosixPath(name.replace("\\", "/"))
        if not parts.name or parts.is_absolute() or ".." in parts.parts:
            raise BadRequest(f"upload name {name!r} must be a relative file name", details={"name": name})
        try:
            content = image if isinstance(image, bytes) else Path(image).read_bytes()
        except OSError as exc:
            raise BadRequest(f"cannot read {str(image)!r} to upload it: {exc.strerror or exc}",
                             details={"path": str(image)}) from exc
        subfolder = str(parts.parent) if str(parts.parent) != "." else ""
        mime = mimetypes.guess_type(parts.name)[0] or "application/octet-stream"
        form = {"type": "input", "subfolder": subfolder, "overwrite": "true" if overwrite else "false"}
        data = self._json("POST", "/upload/image", data=form, files={"image": (parts.name, content, mime)})
        try:
            uploaded, folder = str(data["name"]), str(data.get("subfolder") or "")
        except (KeyError, TypeError) as exc:
            raise RemoteError(f"ComfyUI at {self.url}: /upload/image answered without a name",
                              details={"url": self.url, "body": str(data)[:2000]}) from exc
        return f"{folder}/{uploaded}" if folder else uploaded

    def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt (only if it is `prompt_id`, when given: ComfyUI's targeted interrupt)."""
        self._check(self._request("POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}),
                    "/interrupt")

    def delete_queued(self, prompt_ids: list[str]) -> None:
        """Take prompts that have not started out of the server's queue."""
        self._check(self._request("POST", "/queue", json={"delete": list(prompt_ids)}), "/queue")

    # ---- events ---------------------------------------------------------------------------------------
    def ws_url(self, client_id: str) -> str:
        scheme = "wss" if self.url.startswith("https") else "ws"
        return f"{scheme}{self.url[self.url.index(':'):]}/ws?clientId={quote(client_id, safe='')}"

    def event_stream(self, client_id: str, *, max_backoff: float = 10.0) -> EventStream:
        return EventStream(self, client_id, max_backoff=max_backoff)

    def events(self, client_id: str, *, stop: threading.Event | None = None,
               max_backoff: float = 10.0) -> Iterator[dict[str, Any]]:
        """ComfyUI's JSON messages for `client_id`, reconnecting with backoff, until `stop` is set."""
        stream = self.event_stream(client_id, max_backoff=max_backoff)
        try:
            yield from stream.messages(stop)
        finally:
            stream.close()


class EventStream:
    """One reconnecting websocket to a server's /ws. Binary frames (previews) are skipped.

    `connected` says whether a socket is open now; `down_since` when it was last lost (monotonic seconds,
    None while connected). Backoff doubles from `min_backoff` to `max_backoff` and resets on a connection.
    """

    def __init__(self, client: ComfyUIClient, client_id: str, *, min_backoff: float = 0.25,
                 max_backoff: float = 10.0, poll: float = 0.5) -> None:
        self.client = client
        self.client_id = client_id
        self.min_backoff = min_backoff
        self.max_backoff = max(min_backoff, max_backoff)
        self.poll = poll
        self.connected = False
        self.down_since: float | None = time.monotonic()
        self.connects = 0  # successful connections so far (a reconnect may have lost messages)
        self._closed = threading.Event()
        self._ws: Any = None

    def close(self) -> None:
        self._closed.set()
        ws = self._ws
        if ws is not None:
            ws.close()

    def _connect(self) -> Any:
        from websockets.sync.client import connect

        return connect(self.client.ws_url(self.client_id), additional_headers=self.client.headers or None,
                       open_timeout=self.client.connect_timeout, close_timeout=1.0, max_size=None)

    def messages(self, stop: threading.Event | None = None) -> Iterator[dict[str, Any]]:
        from websockets.exceptions import WebSocketException

        backoff = self.min_backoff
        while not self._stopped(stop):
            try:
                ws = self._connect()
            except (OSError, TimeoutError, WebSocketException) as exc:  # refused, handshake refused, timed out
                log.debug("websocket to %s failed: %s; retrying in %.2fs", self.client.url, exc, backoff)
                self._wait(stop, backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            with ws:  # closed on leaving, whatever ends the reading
                self._ws = ws
                self.connected, self.down_since, backoff = True, None, self.min_backoff
                self.connects += 1
                try:
                    yield from self._read(stop)
                finally:
                    self.connected, self.down_since, self._ws = False, time.monotonic(), None

    def _read(self, stop: threading.Event | None) -> Iterator[dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed

        while not self._stopped(stop):
            try:
                raw = self._ws.recv(timeout=self.poll)
            except TimeoutError:
                continue
            except (ConnectionClosed, OSError) as exc:
                log.info("websocket to %s closed: %s", self.client.url, exc)
                return
            if isinstance(raw, bytes):
                continue
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("ComfyUI at %s sent a websocket text that is not JSON", self.client.url)
                continue
            if isinstance(message, dict) and isinstance(message.get("type"), str):
                yield message

    def _stopped(self, stop: threading.Event | None) -> bool:
        return self._closed.is_set() or (stop is not None and stop.is_set())

    def _wait(self, stop: threading.Event | None, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopped(stop) and time.monotonic() < deadline:
            self._closed.wait(min(0.1, max(0.0, deadline - time.monotonic())))
