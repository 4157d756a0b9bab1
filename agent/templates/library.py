"""ComfyUI's official template library, searchable: `load_library()` → TemplateLibrary.

The index (one TemplateInfo per template) is built once from the templates package and cached as JSON under the
data dir, keyed by the package version and by the registry that named the widgets (see naming.py), so a
later process loads it in milliseconds instead of converting 600+ workflows again.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from rapidfuzz import fuzz, process

from agent.templates.derive import TASK_WORDS, describe
from agent.templates.model import TemplateInfo
from agent.templates.naming import learned_object_info, naming_registry
from agent.templates.slots import derive_slots
from agent.templates.source import package_version, read_index, read_workflow, templates_folder
from compiler.errors import WorkflowFormatError
from compiler.formats import load_workflow
from compiler.text_form import format_text
from nodes.registry import NodeRegistry, default_registry
from runtime.errors import BadRequest, NotFound

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
TASKS = tuple(TASK_WORDS)
WorkflowForm = Literal["ui", "api", "text"]
_LOADED: dict[tuple[str, str], TemplateLibrary] = {}
_LOCK = threading.Lock()


class TemplateNotConvertible(BadRequest):
    """The template's UI workflow could not be turned into the API form."""

    kind = "template_not_convertible"


class IndexFile(BaseModel):
    """The cached index: everything a later load needs without reading the workflows."""

    format: int = CACHE_FORMAT
    version: str
    fingerprint: str
    learned: dict[str, dict[str, Any]]
    templates: list[TemplateInfo]


def registry_fingerprint(registry: NodeRegistry) -> str:
    """Which classes named the widgets: a different registry may name more, so it gets its own cache."""
    return hashlib.sha1("\n".join(sorted(registry.names())).encode()).hexdigest()[:12]


def _api_classes(registry: NodeRegistry) -> set[str]:
    found = set()
    for name in registry.names():
        try:
            if registry.node_info(name).get("api_node"):
                found.add(name)
        except Exception as exc:  # a third-party class whose INPUT_TYPES fails is simply not an API node
            log.debug("node_info(%s) failed: %s", name, exc)
    return found


def build_index(registry: NodeRegistry, folder: Path | None = None) -> IndexFile:
    """Read every template, convert it to the API form and describe it."""
    folder = folder or templates_folder()
    entries = read_index(folder)
    workflows = {tid: read_workflow(folder, tid) for tid in entries}
    learned = learned_object_info(workflows.values())
    naming = naming_registry(registry, learned)
    api_classes = _api_classes(registry)
    templates = []
    for tid, entry in entries.items():
        try:
            prompt = load_workflow(workflows[tid], naming).prompt
        except WorkflowFormatError as exc:
            log.info("template %s does not convert: %s", tid, exc)
            prompt = {}
        templates.append(describe(tid, entry, workflows[tid], prompt, api_classes, derive_slots(prompt)))
    return IndexFile(version=package_version(), fingerprint=registry_fingerprint(registry), learned=learned,
                     templates=templates)


def _cache_path(version: str, fingerprint: str) -> Path:
    from runtime.settings import current

    return current().data_dir / "templates" / f"index-{version}-{fingerprint}.json"


def _read_cache(path: Path) -> IndexFile | None:
    try:
        data = IndexFile.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        if path.exists():
            log.warning("rebuilding the template index: %s is unreadable (%s)", path, exc)
        return None
    return data if data.format == CACHE_FORMAT else None


def _write_cache(path: Path, index: IndexFile) -> None:
    """Atomically (write then rename), so a concurrent reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(index.model_dump_json(), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot cache the template index at %s: %s", path, exc)


def load_library(registry: NodeRegistry | None = None, *, refresh: bool = False) -> TemplateLibrary:
    """The library, built once per package version and registry, then read from the data dir's cache."""
    registry = registry if registry is not None else default_registry()
    version, fingerprint = package_version(), registry_fingerprint(registry)
    path = _cache_path(version, fingerprint)
    key = (version, fingerprint)  # the data dir only holds the cache; what was loaded stays valid
    with _LOCK:
        if not refresh and key in _LOADED:
            return _LOADED[key]
        index = None if refresh else _read_cache(path)
        if index is None:
            index = build_index(registry)
            _write_cache(path, index)
        library = TemplateLibrary(index.templates, index.learned)
        _LOADED[key] = library
        return library


def _terms(words: str | list[str]) -> list[str]:
    """Query terms: whitespace/punctuation separated words, lower-cased (a Chinese phrase stays one term)."""
    text = " ".join(words) if isinstance(words, list) else str(words)
    return [t for t in re.split(r"[\s,;:/|，。、；：]+", text.lower()) if t]


class TemplateLibrary:
    """The templates, their index, search and conversion."""

    def __init__(self, templates: list[TemplateInfo], learned: dict[str, dict[str, Any]]) -> None:
        self._templates = {t.id: t for t in templates}
        self._learned = learned
        self._naming: dict[str, NodeRegistry] = {}

    def __len__(self) -> int:
        return len(self._templates)

    def ids(self) -> list[str]:
        return list(self._templates)

    def get(self, template_id: str) -> TemplateInfo:
        """The template, or NotFound naming the closest ids."""
        found = self._templates.get(template_id)
        if found is None:
            close = [m[0] for m in process.extract(str(template_id), list(self._templates), scorer=fuzz.WRatio,
                                                   limit=5, score_cutoff=60)]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise NotFound(f"unknown template {template_id!r}{hint}", kind="template_not_found",
                           details={"suggestions": close})
        return found

    def tasks(self) -> dict[str, int]:
        """Task → how many templates do it (primary or not), most common first."""
        return dict(Counter(t for info in self._templates.values() for t in info.tasks).most_common())

    # ---- search ---------------------------------------------------------------------------------------------
    @staticmethod
    def _score(info: TemplateInfo, terms: list[str], phrase: str) -> float:
        """Title > tags/task > id > description; a near miss (typo) in the title or tags counts a little."""
        title = f"{info.title} {info.title_zh}".lower()
        tags = " ".join(info.tags).lower()
        task_words = " ".join(w for t in info.tasks for w in (t, *TASK_WORDS.get(t, ())))
        score = 6.0 if len(terms) > 1 and phrase in title else 0.0
        for term in terms:
            hit = 0.0
            if term in title:
                hit += 5
            if term in tags or term in task_words:
                hit += 4 if term not in (info.task, *TASK_WORDS.get(info.task, ())) else 6
            if term in info.id.lower():
                hit += 3
            if not hit and term in info.search_text:
                hit += 1
            if not hit and len(term) > 3:
                ratio = fuzz.partial_ratio(term, f"{title} {tags}")
                hit += 2 * ratio / 100 if ratio >= 85 else 0
            score += hit
        return score

    def search(self, words: str | list[str] = "", task: str | None = None, limit: int = 10) -> list[TemplateInfo]:
        """Templates matching the words (English or Chinese), best first; no words: the most used ones."""
        if task is not None:
            self._check_task(task)
        terms = _terms(words)
        phrase = " ".join(terms)
        scored = []
        for info in self._templates.values():
            if task is not None and task not in info.tasks:
                continue
            score = self._score(info, terms, phrase) if terms else 1.0
            if score > 0:
                scored.append((score, info.usage, info.id, info))
        scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
        return [s[3] for s in scored[:max(1, limit)]]

    def for_task(self, task: str, registry: NodeRegistry | None = None) -> list[TemplateInfo]:
        """Templates doing `task`, best first: primary before secondary, runnable with `registry` (every node
        class known) before the rest, then the most used."""
        self._check_task(task)

        def key(info: TemplateInfo) -> tuple:
            missing = registry is not None and any(n not in registry for n in info.nodes)
            return info.task != task, missing, -info.usage, info.id

        return sorted((t for t in self._templates.values() if task in t.tasks), key=key)

    @staticmethod
    def _check_task(task: str) -> None:
        if task not in TASKS:
            close = [m[0] for m in process.extract(task, TASKS, limit=3, score_cutoff=50)]
            raise BadRequest(f"unknown task {task!r}; tasks are {', '.join(TASKS)}", kind="unknown_task",
                             details={"tasks": list(TASKS), "suggestions": close})

    # ---- workflows -------------------------------------------------------------------------------------------
    def _naming_for(self, registry: NodeRegistry) -> NodeRegistry:
        key = registry_fingerprint(registry)
        if key not in self._naming:
            self._naming[key] = naming_registry(registry, self._learned)
        return self._naming[key]

    def workflow(self, template_id: str, to: WorkflowForm = "ui",
                 registry: NodeRegistry | None = None) -> dict[str, Any] | str:
        """The template's workflow: as shipped (ui), converted (api), or in NodeWeaver's text form."""
        self.get(template_id)
        if to not in ("ui", "api", "text"):
            raise BadRequest(f"unknown workflow form {to!r}; use ui, api or text", kind="bad_form")
        workflow = read_workflow(templates_folder(), template_id)
        if to == "ui":
            return workflow
        naming = self._naming_for(registry if registry is not None else default_registry())
        try:
            prompt = load_workflow(workflow, naming).prompt
        except WorkflowFormatError as exc:
            raise TemplateNotConvertible(f"template {template_id!r} does not convert to the API form: {exc}",
                                         details={"errors": [e.model_dump() for e in exc.errors]}) from None
        return prompt if to == "api" else format_text(prompt, naming)
