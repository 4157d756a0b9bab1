"""Structured workflow errors with ComfyUI's error types and shape.

These errors are what the agent reflects on, what the MCP tools return and what the HTTP API answers,
unchanged. `to_comfy()` gives ComfyUI's `{type, message, details, extra_info}` dict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_serializer

from nodes.spec import SURROGATE as _SURROGATE
from nodes.spec import json_safe, safe_text
from runtime.errors import NodeWeaverError

REPORT_DEPTH = 64
"""How deep a received value is copied into an error; reports echo input, and must stay strict JSON."""

# ComfyUI's own error types, and the ones NodeWeaver adds where ComfyUI has none.
COMFY_ERROR_TYPES = frozenset({
    "invalid_prompt", "prompt_no_outputs", "prompt_outputs_failed_validation", "missing_node_type",
    "required_input_missing", "bad_linked_input", "return_type_mismatch", "invalid_input_type",
    "value_smaller_than_min", "value_bigger_than_max", "value_not_in_list", "custom_validation_failed",
    "exception_during_inner_validation", "exception_during_validation",
})
NODEWEAVER_ERROR_TYPES = frozenset({
    "dangling_link",              # a link to a node id that is not in the workflow
    "output_index_out_of_range",  # a link to an output slot the source node does not have
    "dependency_cycle",           # nodes that depend on each other in a loop
    "literal_for_link_input",     # a literal where only a node output can supply the value
    "unknown_input",              # (warning) an input the node does not declare
    "unreachable_node",           # (warning) a node no output needs, so it will not run
    "invalid_workflow_format",    # the document is not a workflow in any known format
    "text_form_syntax",           # the compact text form does not parse
    "conversion_warning",         # (warning) something of a UI workflow that could not be converted
})


class WorkflowError(BaseModel):
    """One problem with a workflow, located as precisely as possible."""

    type: str
    message: str
    details: str = ""
    node_id: str | None = None
    class_type: str | None = None
    input_name: str | None = None
    extra_info: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Errors echo input, which may hold lone surrogates, NaN, inf or values nested 990 deep: keep every
        report strict JSON that encodes as UTF-8 (one check of the texts, one copy of extra_info).

        node_id, class_type and input_name stay as the workflow has them, so they still match its nodes;
        they are made safe where they leave: model_dump, to_comfy, str and node_errors' keys."""
        if _SURROGATE.search(self.message) is not None:
            self.__dict__["message"] = safe_text(self.message)
        if _SURROGATE.search(self.details) is not None:
            self.__dict__["details"] = safe_text(self.details)
        if self.extra_info:
            self.__dict__["extra_info"] = json_safe(self.extra_info, max_depth=REPORT_DEPTH)

    @field_serializer("node_id", "class_type", "input_name")
    def _utf8(self, value: str | None) -> str | None:
        return safe_text(value) if value is not None else None

    def to_comfy(self) -> dict[str, Any]:
        extra = dict(self.extra_info)
        if self.input_name is not None:
            extra.setdefault("input_name", safe_text(self.input_name))
        return {"type": self.type, "message": self.message, "details": self.details, "extra_info": extra}

    def __str__(self) -> str:
        where = ""
        if self.node_id is not None:
            where = f"node {safe_text(self.node_id)}"
            if self.class_type:
                where += f" ({safe_text(self.class_type)})"
            if self.input_name:
                where += f", input '{safe_text(self.input_name)}'"
            where += ": "
        tail = f" [{self.details}]" if self.details and self.details not in self.message else ""
        return f"{where}{self.message}{tail} ({self.type})"


class WorkflowFormatError(NodeWeaverError, ValueError):
    """The input could not be read as a workflow at all; carries structured errors."""

    kind = "invalid_workflow_format"

    def __init__(self, errors: list[WorkflowError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors), details=[e.model_dump() for e in errors])
