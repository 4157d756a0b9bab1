"""A local HTTP server on 127.0.0.1 that speaks OpenAI's chat completions and DashScope's text-generation
and image-synthesis (task submit + poll) protocols, with scripted failures chosen by the model name:

  *-ok / anything else   success          flaky-500   500 once, then success
  rate-limited           429 + Retry-After once        slow        answers after 3 s
  malformed              200 with a broken body        moderated   content refusal
  (wrong key)            401 / InvalidApiKey
  scripted*              OpenAI chat: the next reply of `chat_script` (text, or tool calls), in order
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY = "test-key-0123456789"


def _png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def vision_verdict(messages: list[dict]) -> str | None:
    """A judge's answer for a chat that carries images (OpenAI `image_url` parts with base64 data URLs), else
    None. Each image is decoded; the output satisfies the request when the request names the colour the
    images mostly are (red, green or blue), so a test can expect either verdict."""
    import base64

    from PIL import Image, ImageStat

    parts = [p for m in messages if isinstance(m.get("content"), list) for p in m["content"] if isinstance(p, dict)]
    urls = [p["image_url"]["url"] for p in parts if p.get("type") == "image_url"]
    if not urls:
        return None
    request = " ".join(p.get("text", "") for p in parts if p.get("type") == "text").lower()
    colours = []
    for url in urls:
        image = Image.open(io.BytesIO(base64.b64decode(url.split("base64,", 1)[1]))).convert("RGB")
        means = ImageStat.Stat(image).mean
        colours.append(("red", "green", "blue")[means.index(max(means))])
    resolved = all(c in request for c in colours)
    return json.dumps({"resolved": resolved, "reason": f"{len(urls)} image(s), mostly {', '.join(colours)}"})


class FakeProviders:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: Counter = Counter()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        # replies for models named scripted*: {"content": str} or {"tool_calls": [{"name", "arguments"}]}
        self.chat_script: list[dict[str, Any]] = []
        self.scripted_served = 0
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeProviders:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, path_part: str, model: str | None = None) -> int:
        return sum(1 for r in self.requests if path_part in r["path"] and (model is None or r.get("model") == model))

    # ---- behaviour --------------------------------------------------------------------------------------
    def scripted(self, model: str) -> tuple[int, dict[str, str], Any] | None:
        """A scripted failure for this model, or None to answer normally."""
        with self.lock:
            if model == "flaky-500" and self.failures[model] < 1:
                self.failures[model] += 1
                return 500, {}, {"error": {"message": "internal error", "code": "InternalError"}}
            if model == "rate-limited" and self.failures[model] < 1:
                self.failures[model] += 1
                return 429, {"Retry-After": "1"}, {"error": {"message": "slow down", "code": "rate_limit_exceeded"}}
        if model == "slow":
            time.sleep(3)
        if model == "malformed":
            return 200, {}, "{not json"
        return None

    def next_scripted(self) -> dict[str, Any]:
        """The next scripted chat reply as an OpenAI message and finish reason (tool calls get ids call_N)."""
        with self.lock:
            if not self.chat_script:
                return {"message": {"role": "assistant", "content": "the script has ended"}, "finish": "stop"}
            reply = self.chat_script.pop(0)
            served, self.scripted_served = self.scripted_served, self.scripted_served + 1
        if not reply.get("tool_calls"):
            return {"message": {"role": "assistant", "content": reply.get("content", "")}, "finish": "stop"}
        calls = [{"id": f"call_{served}_{i}", "type": "function",
                  "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))}}
                 for i, c in enumerate(reply["tool_calls"])]
        return {"message": {"role": "assistant", "content": reply.get("content"), "tool_calls": calls},
                "finish": "tool_calls"}

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
                    self.wfile.write(data)

            def _json(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    return json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    return {}

            def _authorised(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {KEY}"

            def do_GET(self):
                server.requests.append({"path": self.path, "method": "GET"})
                if self.path.startswith("/files/"):
                    width, height = (int(v) for v in self.path.split("/")[-1].split(".")[0].split("x"))
                    return self._send(200, _png(width, height, (40, 120, 200)), content_type="image/png")
                if self.path.startswith("/api/v1/tasks/"):
                    if not self._authorised():
                        return self._send(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."})
                    task_id = self.path.rsplit("/", 1)[-1]
                    task = server.tasks.get(task_id)
                    if task is None:
                        return self._send(404, {"code": "NotFound", "message": "task not found"})
                    task["polls"] += 1
                    output: dict[str, Any] = {"task_id": task_id}
                    if task["polls"] < 2:
                        output["task_status"] = "RUNNING"
                    elif task.get("fail_code"):
                        output.update(task_status="FAILED", code=task["fail_code"], message=task["fail_message"])
                    else:
                        width, height = task["size"].split("*")
                        output.update(task_status="SUCCEEDED", results=[
                            {"url": f"{server.url}/files/{width}x{height}.png"} for _ in range(task["n"])])
                    return self._send(200, {"request_id": str(uuid.uuid4()), "output": output,
                                            "usage": {"image_count": task["n"]}})
                return self._send(404, {"code": "NotFound", "message": self.path})

            def do_POST(self):
                body = self._json()
                model = body.get("model", "")
                server.requests.append({"path": self.path, "method": "POST", "model": model, "body": body,
                                        "auth": self.headers.get("Authorization")})
                openai = self.path.endswith("/chat/completions")
                if not self._authorised():
                    if openai:
                        return self._send(401, {"error": {"message": "Incorrect API key provided: sk-wrong1234567",
                                                          "code": "invalid_api_key"}})
                    return self._send(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided."})
                scripted = server.scripted(model)
                if scripted is not None:
                    status, headers, payload = scripted
                    if not openai and isinstance(payload, dict) and "error" in payload:
                        payload = {"code": payload["error"]["code"], "message": payload["error"]["message"]}
                    return self._send(status, payload, headers)
                if model == "moderated":
                    if openai:
                        return self._send(400, {"error": {"message": "content rejected", "code": "content_filter"}})
                    return self._send(400, {"code": "DataInspectionFailed",
                                            "message": "Input data may contain inappropriate content."})
                if openai:
                    return self._openai(body)
                if self.path.endswith("/text-generation/generation"):
                    return self._dashscope_text(body)
                if self.path.endswith("/text2image/image-synthesis"):
                    return self._dashscope_image(body)
                return self._send(404, {"code": "NotFound", "message": self.path})

            def _answer(self, messages: list[dict]) -> str:
                prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
                system = next((m["content"] for m in messages if m.get("role") == "system"), "")
                if "JSON" in system or "JSON" in prompt:
                    return '{"cities": ["Hangzhou", "Suzhou", "Nanjing"]}'
                return f"A realistic landscape painting inspired by: {prompt}"

            def _openai(self, body: dict):
                if str(body.get("model", "")).startswith("scripted"):
                    reply = server.next_scripted()
                    return self._send(200, {
                        "id": "chatcmpl-s", "object": "chat.completion", "created": int(time.time()),
                        "model": body["model"], "choices": [{"index": 0, "finish_reason": reply["finish"],
                                                             "message": reply["message"]}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}})
                text = vision_verdict(body.get("messages", [])) or self._answer(body.get("messages", []))
                return self._send(200, {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 12, "total_tokens": 22}})

            def _dashscope_text(self, body: dict):
                messages = body.get("input", {}).get("messages", [])
                text = self._answer(messages)
                return self._send(200, {
                    "request_id": str(uuid.uuid4()),
                    "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": text}}]},
                    "usage": {"input_tokens": 10, "output_tokens": 12, "total_tokens": 22}})

            def _dashscope_image(self, body: dict):
                if self.headers.get("X-DashScope-Async") != "enable":
                    return self._send(400, {"code": "InvalidParameter", "message": "async header required"})
                params = body.get("parameters", {})
                task_id = str(uuid.uuid4())
                task = {"polls": 0, "size": params.get("size", "1024*1024"), "n": int(params.get("n", 1))}
                if "forbidden" in body.get("input", {}).get("prompt", ""):
                    task.update(fail_code="DataInspectionFailed", fail_message="Output data may contain "
                                                                                  "inappropriate content.")
                server.tasks[task_id] = task
                return self._send(200, {"request_id": str(uuid.uuid4()),
                                        "output": {"task_id": task_id, "task_status": "PENDING"}})

        return Handler
