"""One error root for everything NodeWeaver raises on purpose.

Each error carries a `kind` (a stable machine-readable name, ComfyUI's where ComfyUI has one) and the HTTP
status an adapter answers with. Adapters (HTTP, MCP, CLI) map `NodeWeaverError` in one place each; anything
else that escapes is a bug, logged with its traceback and answered as a generic 500 without internals.
"""

from __future__ import annotations

from typing import Any


class NodeWeaverError(Exception):
    """The root. Subclasses set `kind` and `status` as class defaults; instances may override them."""

    kind: str = "error"
    status: int = 400

    def __init__(self, message: str = "", *, kind: str | None = None, status: int | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        if status is not None:
            self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The structured form adapters return: type, message and details."""
        return {"type": self.kind, "message": str(self), "details": self.details}


class BadRequest(NodeWeaverError):
    """Input that cannot be accepted as it is (shape, size, range)."""

    kind = "bad_request"
    status = 400


class TooLarge(NodeWeaverError):
    """Input over one of the configured size bounds."""

    kind = "too_large"
    status = 413


class NotFound(NodeWeaverError):
    kind = "not_found"
    status = 404
