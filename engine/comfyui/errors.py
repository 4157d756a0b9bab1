"""Errors of talking to a remote ComfyUI, in NodeWeaver's one error root (runtime.errors).

An unreachable server is a 503 naming its URL; a workflow the server refuses comes back as NodeWeaver's
structured workflow errors, so the agent, MCP and HTTP callers read it as they read a local validation.
"""

from __future__ import annotations

from typing import Any

from compiler.errors import WorkflowError
from runtime.errors import NodeWeaverError


class BackendUnavailable(NodeWeaverError):
    """The ComfyUI server cannot be reached (refused, timed out, gone); `details` holds its URL."""

    kind = "backend_unavailable"
    status = 503


class RemoteError(NodeWeaverError):
    """The server answered, but not as ComfyUI's protocol says (an unexpected status or body)."""

    kind = "remote_error"
    status = 502


class RemoteValidationError(NodeWeaverError):
    """ComfyUI's /prompt refused the workflow (HTTP 400): its error and node_errors, mapped.

    `errors` are WorkflowError objects (type, message, details, node_id, class_type, input_name);
    `details` carries them as dicts beside ComfyUI's own `error` and `node_errors`, unchanged.
    """

    kind = "remote_validation"
    status = 400

    def __init__(self, url: str, error: Any, node_errors: Any) -> None:
        self.url = url
        self.error = error if isinstance(error, dict) else {"type": "invalid_prompt", "message": str(error)}
        self.node_errors = node_errors if isinstance(node_errors, dict) else {}
        self.errors = map_node_errors(self.error, self.node_errors)
        message = str(self.error.get("message") or "the remote ComfyUI refused the workflow")
        super().__init__(f"ComfyUI at {url}: {message} ({len(self.errors)} error(s))",
                         details={"url": url, "error": self.error, "node_errors": self.node_errors,
                                  "errors": [e.model_dump() for e in self.errors]})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def map_node_errors(error: dict[str, Any], node_errors: dict[str, Any]) -> list[WorkflowError]:
    """ComfyUI's {node_id: {errors: [...], class_type}} as one WorkflowError per error; the top-level error
    alone when no node is named (a prompt without outputs, say)."""
    mapped: list[WorkflowError] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, dict):
            continue
        class_type = entry.get("class_type")
        for item in entry.get("errors") or []:
            if not isinstance(item, dict):
                continue
            extra = item.get("extra_info") if isinstance(item.get("extra_info"), dict) else {}
            input_name = extra.get("input_name")
            mapped.append(WorkflowError(
                type=_text(item.get("type")) or "invalid_prompt", message=_text(item.get("message")),
                details=_text(item.get("details")), node_id=str(node_id),
                class_type=_text(class_type) or None, input_name=_text(input_name) or None,
                extra_info={**extra, "remote": True}))
    if not mapped:
        mapped.append(WorkflowError(type=_text(error.get("type")) or "invalid_prompt",
                                    message=_text(error.get("message")) or "invalid prompt",
                                    details=_text(error.get("details")), extra_info={"remote": True}))
    return mapped
