"""Reading the templates package (comfyui-workflow-templates-json): its index, Chinese index and workflow files.

The package ships UI-format workflows plus index.json (categories → templates) and translated indexes. Nothing
here needs a ComfyUI: the package is plain JSON data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from runtime.errors import NodeWeaverError

PACKAGE = "comfyui_workflow_templates_json"
DISTRIBUTION = "comfyui-workflow-templates-json"


class TemplatesUnavailable(NodeWeaverError):
    """The templates package is not installed (it is a NodeWeaver dependency, so this is a broken install)."""

    kind = "templates_unavailable"
    status = 503


@dataclass(frozen=True)
class IndexEntry:
    """One template's index entries (English and Chinese) and the category it is listed under."""

    entry: dict[str, Any]
    entry_zh: dict[str, Any]
    category: str


def templates_folder() -> Path:
    """The package's templates/ folder (found without importing anything heavy)."""
    try:
        import comfyui_workflow_templates_json as package
    except ImportError:
        raise TemplatesUnavailable(f"the {DISTRIBUTION} package is not installed; pip install {DISTRIBUTION}") \
            from None
    return Path(package.__file__).resolve().parent / "templates"


def package_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _by_name(index: Any) -> dict[str, tuple[dict, str]]:
    found: dict[str, tuple[dict, str]] = {}
    for group in index if isinstance(index, list) else []:
        if not isinstance(group, dict):
            continue
        label = str(group.get("title") or group.get("category") or "")
        for entry in group.get("templates") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                found.setdefault(entry["name"], (entry, label))
    return found


def read_index(folder: Path) -> dict[str, IndexEntry]:
    """Template id → its English and Chinese index entries; ids whose workflow file is missing are dropped."""
    english = _by_name(_read_json(folder / "index.json"))
    zh_path = folder / "index.zh.json"
    chinese = _by_name(_read_json(zh_path)) if zh_path.is_file() else {}
    out = {}
    for name, (entry, category) in english.items():
        if (folder / f"{name}.json").is_file():
            out[name] = IndexEntry(entry=entry, entry_zh=chinese.get(name, ({}, ""))[0], category=category)
    return out


def read_workflow(folder: Path, template_id: str) -> dict[str, Any]:
    return _read_json(folder / f"{template_id}.json")
