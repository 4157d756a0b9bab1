"""Workflow in (API JSON, UI JSON or text form), validated Plan out, with structured errors."""

from compiler.errors import WorkflowError, WorkflowFormatError
from compiler.formats import load_workflow, to_api_workflow
from compiler.plan import Plan
from compiler.text_form import format_text, parse_text
from compiler.validator import ValidationResult, validate

__all__ = [
    "Plan", "ValidationResult", "WorkflowError", "WorkflowFormatError", "format_text", "load_workflow",
    "parse_text", "to_api_workflow", "validate",
]
