"""Reading a workflow in any of its three forms (API JSON, UI JSON, text form) as API JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from compiler.errors import WorkflowError, WorkflowFormatError
from compiler.text_form import parse_text
from compiler.ui_format import is_ui_workflow, ui_to_api
from nodes.registry import NodeRegistry

WorkflowFormat = Literal["api", "ui", "text"]
MAX_WORKFLOW_BYTES = 256 * 1024 * 1024


class LoadedWorkflow(BaseModel):
    """An API-format workflow and where it came from."""

    prompt: dict[str, Any]
    format: WorkflowFormat
    warnings: list[WorkflowError] = Field(default_factory=list)


def _format_error(message: str, **extra: Any) -> WorkflowFormatError:
    return WorkflowFormatError([WorkflowError(type="invalid_workflow_format", message=message, extra_info=extra)])


def detect_format(data: Any) -> WorkflowFormat:
    if isinstance(data, str):
        return "text"
    if is_ui_workflow(data):
        return "ui"
    if isinstance(data, dict):
        return "api"
    raise _format_error(f"a workflow must be a JSON object or text form, got {type(data).__name__}")


def _unwrap(data: Any) -> Any:
    """Accept the envelopes workflows travel in: POST /prompt bodies and PNG-style {"workflow": ...}."""
    if isinstance(data, dict) and not is_ui_workflow(data):
        if isinstance(data.get("prompt"), dict) and all(isinstance(v, dict) for v in data["prompt"].values()):
            return data["prompt"]
        if is_ui_workflow(data.get("workflow")) and not any(
                isinstance(v, dict) and "class_type" in v for v in data.values()):
            return data["workflow"]
    return data


def to_api_workflow(data: Any, registry: NodeRegistry) -> LoadedWorkflow:
    """Any parsed workflow (dict or text) → API format; raises WorkflowFormatError when it is none."""
    data = _unwrap(data)
    fmt = detect_format(data)
    if fmt == "text":
        return LoadedWorkflow(prompt=parse_text(data, registry), format="text")
    if fmt == "ui":
        prompt, warnings = ui_to_api(data, registry)
        return LoadedWorkflow(prompt=prompt, format="ui", warnings=warnings)
    return LoadedWorkflow(prompt=data, format="api")


def parse_source(text: str) -> Any:
    """JSON when it is JSON, else the text form as a string."""
    stripped = text.lstrip("\ufeff").strip()
    if stripped.startswith(("{", "[")):
        return _json_document(stripped)
    return stripped + "\n" if stripped else stripped


def _json_document(text: str) -> Any:
    """Parse JSON (braces first: a JSON document, never the text form), every failure a format error."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _format_error(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                            line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise _format_error("invalid JSON: nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4,300 digits)
        raise _format_error(f"invalid JSON: {exc}") from None


def load_workflow(source: str | bytes | Path | dict, registry: NodeRegistry) -> LoadedWorkflow:
    """Load a workflow from a path, raw text/bytes, or an already-parsed object."""
    if isinstance(source, Path):
        try:
            if source.stat().st_size > MAX_WORKFLOW_BYTES:
                raise _format_error(f"{source} is larger than {MAX_WORKFLOW_BYTES // (1024 * 1024)} MiB")
            raw = source.read_bytes()
        except OSError as exc:
            raise _format_error(f"cannot read {source}: {exc.strerror or exc}") from None
        if raw.startswith(b"\x89PNG"):
            from compiler.png import workflow_from_png

            return to_api_workflow(workflow_from_png(raw), registry)
        source = raw
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _format_error(f"the file is not UTF-8 text: {exc}") from None
    if isinstance(source, str):
        if not source.strip():
            raise _format_error("the workflow is empty")
        source = parse_source(source)
    return to_api_workflow(source, registry)
