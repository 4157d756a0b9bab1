"""Eval suites: the YAML format of ../shared/evals/README.md, read into typed models with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError


class Case(BaseModel):
    id: str
    lang: str = "en"
    prompt: str
    category: str = ""
    expect: dict[str, Any] = Field(default_factory=dict)

    def family(self) -> str:
        """The case's category: given, or the id's first word (t2i, lora, img2img ...)."""
        return self.category or self.id.split("-")[0]


class Suite(BaseModel):
    suite: str
    environment: dict[str, Any] = Field(default_factory=dict)
    cases: list[Case]


class SuiteError(ValueError):
    pass


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
    return suite
