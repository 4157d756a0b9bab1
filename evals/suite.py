"""Eval suites: the YAML format of ../shared/evals/README.md, read into typed models with clear errors.

Paths in a suite (`catalog:`, a case's `workflow:` file) are relative to the suite file, so a suite that sits
beside ../shared runs the same from any working directory; `load_suite` resolves them once, up front.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from evals.environment import KIND_FOLDERS

ENVIRONMENT_KINDS = frozenset(KIND_FOLDERS) | {"input"}


class Case(BaseModel):
    id: str
    lang: str = "en"
    prompt: str
    category: str = ""
    workflow: dict[str, Any] | str | None = None  # an edit case's base workflow: API dict, or a path (resolved)
    expect: dict[str, Any] = Field(default_factory=dict)

    def family(self) -> str:
        """The case's category: given, or the id's first word (t2i, lora, img2img ...)."""
        return self.category or self.id.split("-")[0]


class Suite(BaseModel):
    suite: str
    catalog: str | None = None  # a ComfyUI /object_info file imported into the registry for this suite
    aliases: dict[str, Any] = Field(default_factory=dict)  # YAML anchors (node alternatives) the cases reuse
    environment: dict[str, Any] = Field(default_factory=dict)
    cases: list[Case]


class SuiteError(ValueError):
    pass


def _read_workflow(path: Path, case_id: str) -> dict[str, Any]:
    """A base workflow file in API format (a JSON object of node entries)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SuiteError(f"case {case_id}: cannot read its base workflow {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(n, dict) and "class_type" in n for n in data.values()):
        raise SuiteError(f"case {case_id}: base workflow {path} is not an API-format workflow "
                         "(a JSON object of {class_type, inputs} entries)")
    return data


def _resolve_paths(suite: Suite, base: Path) -> None:
    """Make `catalog` absolute and read every case's `workflow:` file, relative to the suite's folder."""
    if suite.catalog is not None:
        catalog = (base / suite.catalog).resolve()
        if not catalog.is_file():
            raise SuiteError(f"suite {suite.suite}: its catalog {suite.catalog} is not at {catalog}")
        suite.catalog = str(catalog)
    for case in suite.cases:
        if isinstance(case.workflow, str):
            case.workflow = _read_workflow((base / case.workflow).resolve(), case.id)
        elif isinstance(case.workflow, dict) and not all(isinstance(n, dict) for n in case.workflow.values()):
            raise SuiteError(f"case {case.id}: its inline workflow is not an API-format workflow")


def load_suite(path: Path) -> Suite:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"cannot read suite {path}: {exc}") from None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise SuiteError(f"suite {path} is not in the suite format: {exc.errors()[0]['msg']} at "
                         f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}") from None
    ids = [c.id for c in suite.cases]
    if len(set(ids)) != len(ids):
        raise SuiteError(f"suite {path} repeats case ids")
    unknown = sorted(set(suite.environment) - ENVIRONMENT_KINDS)
    if unknown:
        raise SuiteError(f"suite {path}: unknown environment kind(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(ENVIRONMENT_KINDS))}")
    _resolve_paths(suite, Path(path).resolve().parent)
    return suite
