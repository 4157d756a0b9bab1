"""What the template library knows about one ComfyUI template: the boundary shape of index, CLI, HTTP and MCP."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelFile(BaseModel):
    """A model file a template needs; `directory` is the ComfyUI folder kind (checkpoints, loras, vae …)."""

    name: str
    url: str | None = None
    directory: str | None = None


class InputFile(BaseModel):
    """A file the template loads from ComfyUI's input folder (its example input)."""

    kind: str  # image | mask | video | audio | 3d
    name: str
    node: str | None = None  # API node id, when the loader is known


class Slot(BaseModel):
    """Where one editable value lives in the API form: node id + input name, with the template's own value."""

    node: str
    input: str
    value: Any = None


class TemplateInfo(BaseModel):
    """One template, described from its index entry and from the workflow itself (see derive.py)."""

    id: str
    title: str
    title_zh: str = ""
    description: str = ""
    description_zh: str = ""
    tags: list[str] = Field(default_factory=list)
    category: str = ""
    media_type: str = ""
    task: str = ""
    tasks: list[str] = Field(default_factory=list)
    controlnet_kinds: list[str] = Field(default_factory=list)
    models: list[ModelFile] = Field(default_factory=list)
    inputs: list[InputFile] = Field(default_factory=list)
    slots: dict[str, list[Slot]] = Field(default_factory=dict)
    nodes: list[str] = Field(default_factory=list)
    subgraphs: bool = False
    open_source: bool | None = None
    usage: int = 0
    search_text: str = ""

    def summary(self) -> dict[str, Any]:
        """The short form listings answer with (search results, tables)."""
        return {"id": self.id, "title": self.title, "title_zh": self.title_zh, "task": self.task,
                "tasks": self.tasks, "category": self.category, "open_source": self.open_source,
                "models": [m.name for m in self.models], "inputs": [i.name for i in self.inputs]}
