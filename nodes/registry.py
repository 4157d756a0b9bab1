"""Which nodes exist: built-in packs, third-party ComfyUI packs and imported catalogs, in one registry.

The registry is also the agent's tool catalog (search, producers/consumers of a socket type, one node's
schema as compact text) and exports itself as ComfyUI `/object_info` JSON.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from nodes.catalog_files import with_local_files
from nodes.search import NodeSearchIndex, SearchHit
from nodes.spec import NodeSpec, class_object_info
from runtime.errors import NodeWeaverError

log = logging.getLogger(__name__)

BUILTIN_PACKS: tuple[str, ...] = ("nodes.core", "nodes.diffusion", "nodes.api")
SUGGEST_CACHE_SIZE = 4096  # names remembered by suggest(); the cache starts over when full


class PackLoadError(BaseModel):
    """A node pack that could not be loaded, reported by name; the other packs still load."""

    pack: str
    path: str
    error: str


class RegistryError(NodeWeaverError, LookupError):
    """Asked for a node class that the registry does not know."""

    kind = "missing_node_type"
    status = 404


class NodeRegistry:
    """Node classes (executable here) and imported catalog entries (validatable, run elsewhere)."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._display: dict[str, str] = {}
        self._pack_of: dict[str, str] = {}
        self._catalog: dict[str, dict[str, Any]] = {}
        self._spec_cache: dict[str, NodeSpec] | None = None
        self._socket_types: frozenset[str] | None = None
        self._index: NodeSearchIndex | None = None
        self._suggestions: dict[tuple[str, int], list[str]] = {}
        self.load_errors: list[PackLoadError] = []
        self.packs: list[str] = []
        # remote ComfyUI catalogs: their sources, and their entries of classes executable here too (whose
        # choice lists, the server's installed models, are merged into ours)
        self.remote_sources: set[str] = set()
        self._overlays: dict[str, dict[str, dict[str, Any]]] = {}

    # ---- registration -------------------------------------------------------------------------------
    def register(self, name: str, cls: type, display_name: str | None = None, pack: str = "") -> None:
        problem = _class_problem(name, cls)
        if problem:
            raise TypeError(problem)
        self._classes[name] = cls
        self._pack_of[name] = pack
        if display_name:
            self._display[name] = display_name
        self._invalidate()

    def register_module(self, module: ModuleType, pack: str) -> list[str]:
        """Register a module's NODE_CLASS_MAPPINGS; a bad class is reported and skipped, not fatal."""
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        display = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
        if not isinstance(mappings, Mapping) and hasattr(module, "comfy_entrypoint"):
            # a ComfyUI V3 pack (ComfyExtension)
            from nodes.comfy_compat.extensions import entrypoint_mappings

            mappings, display = entrypoint_mappings(module) or ({}, {})
        if not isinstance(mappings, Mapping):
            raise TypeError("the pack exports no NODE_CLASS_MAPPINGS dict (nor a comfy_entrypoint)")
        added = []
        for name, cls in mappings.items():
            problem = _class_problem(str(name), cls)
            if problem:
                self.load_errors.append(PackLoadError(pack=pack, path=getattr(module, "__file__", "") or "",
                                                      error=problem))
                continue
            self._classes[str(name)] = cls
            self._pack_of[str(name)] = pack
            if isinstance(display, Mapping) and name in display:
                self._display[str(name)] = str(display[name])
            added.append(str(name))
        self.packs.append(pack)
        self._invalidate()
        return added

    def load_builtin_packs(self, modules: Iterable[str] = BUILTIN_PACKS) -> None:
        for module_name in modules:
            try:
                module = importlib.import_module(module_name)
                self.register_module(module, pack=module_name)
            except Exception as exc:  # a broken built-in must not take the others down
                self._record_error(module_name, module_name, exc)

    def load_custom_nodes(self, paths: Iterable[Path]) -> None:
        """Load every pack in each folder (or a pack path given directly), ComfyUI's custom_nodes style."""
        for root in paths:
            root = Path(root)
            if not root.exists():
                self.load_errors.append(PackLoadError(pack=root.name, path=str(root), error="path does not exist"))
                continue
            if _is_pack(root) and (root.is_file() or (root / "__init__.py").is_file()):
                candidates = [root]
            else:
                candidates = sorted(p for p in root.iterdir() if _is_pack(p))
            for pack_path in candidates:
                self.load_pack_path(pack_path)

    def load_pack_path(self, path: Path) -> list[str]:
        """Import one pack (a module file or a package folder); failures are recorded by pack name.

        ComfyUI's modules (comfy, comfy_execution, comfy_api, server, folder_paths) are put in place first,
        unless real ones are importable, so the pack's own imports of them work.
        """
        from nodes.comfy_compat import install_shims

        install_shims()
        pack = path.stem if path.is_file() else path.name
        try:
            module = _import_pack(path)
            return self.register_module(module, pack=pack)
        except BaseException as exc:  # noqa: BLE001 - a pack may even call sys.exit at import
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._record_error(pack, str(path), exc)
            return []

    def import_catalog(self, object_info: Mapping[str, Any], source: str = "catalog", *,
                       remote: bool = False) -> list[str]:
        """Add nodes from a ComfyUI `/object_info` document: known and validatable, not executable here.

        Classes that are executable here keep their own definition. With `remote` (a live ComfyUI server's
        catalog, source "comfyui:<url>"), the source is marked remote and, for classes executable here
        too, the server's choice lists (its installed models) are kept and offered beside ours.
        """
        if not isinstance(object_info, Mapping):
            raise ValueError("an object_info document must be a JSON object of node entries")
        added = []
        for name, entry in object_info.items():
            if name in self._classes:
                if remote and isinstance(entry, Mapping):
                    self._overlays.setdefault(str(name), {})[source] = dict(entry)
                continue
            try:
                NodeSpec.from_object_info(entry, executable=False)
            except (ValueError, TypeError) as exc:
                self.load_errors.append(PackLoadError(pack=source, path=str(name), error=f"bad entry: {exc}"))
                continue
            self._catalog[str(name)] = dict(entry)
            self._pack_of[str(name)] = source
            added.append(str(name))
        self.packs.append(source)
        if remote:
            self.remote_sources.add(source)
        self._invalidate()
        return added

    def forget_catalog(self, source: str) -> int:
        """Drop what one imported catalog added (a remote server's, before it is read again); the number of
        catalog-only nodes dropped. Nodes another source also provides stay only if that source is reimported."""
        gone = [name for name, pack in self._pack_of.items() if pack == source and name in self._catalog]
        for name in gone:
            del self._catalog[name]
            del self._pack_of[name]
        for sources in self._overlays.values():
            sources.pop(source, None)
        self.packs = [p for p in self.packs if p != source]
        self.remote_sources.discard(source)
        self._invalidate()
        return len(gone)

    def is_remote(self, name: str) -> bool:
        """Whether a node is known only from a remote ComfyUI server's catalog (it runs there, not here)."""
        return name not in self._classes and self._pack_of.get(name, "") in self.remote_sources

    def import_catalog_file(self, path: Path) -> list[str]:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return self.import_catalog(data, source=Path(path).name)

    # ---- lookup -----------------------------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._catalog

    def __len__(self) -> int:
        return len(self.names())

    def names(self) -> list[str]:
        return list(self._classes) + [n for n in self._catalog if n not in self._classes]

    def get_class(self, name: str) -> type | None:
        """The executable class, or None for unknown and catalog-only nodes."""
        return self._classes.get(name)

    def is_executable(self, name: str) -> bool:
        return name in self._classes

    def pack_of(self, name: str) -> str:
        return self._pack_of.get(name, "")

    def display_name(self, name: str) -> str:
        if name in self._catalog and name not in self._classes:
            return str(self._catalog[name].get("display_name") or name)
        return self._display.get(name, name)

    def node_info(self, name: str) -> dict[str, Any]:
        """One `/object_info` entry, computed now (choice lists reflect the folders as they are)."""
        cls = self._classes.get(name)
        if cls is not None:
            info = self.local_info(name)
            for entry in self._overlays.get(name, {}).values():
                info = _with_choices_of(info, entry)
            return info
        if name in self._catalog:
            return with_local_files(name, self._catalog[name])
        raise RegistryError(f"unknown node class {name!r}")

    def local_info(self, name: str) -> dict[str, Any]:
        """The `/object_info` entry of a class executable here, as this installation alone fills it."""
        cls = self._classes[name]
        return class_object_info(name, cls, self._display.get(name), _module_label(cls, self._pack_of[name]))

    def object_info(self) -> dict[str, dict[str, Any]]:
        """The whole catalog as ComfyUI's `/object_info`; a class whose INPUT_TYPES fails is left out."""
        info: dict[str, dict[str, Any]] = {}
        for name in self.names():
            try:
                info[name] = self.node_info(name)
            except Exception as exc:
                log.warning("node %s left out of object_info: %s", name, exc)
        return info

    def spec(self, name: str) -> NodeSpec:
        """A fresh spec (calls INPUT_TYPES now); raises RegistryError for unknown names."""
        info = self.node_info(name)
        return NodeSpec.from_object_info(info, executable=name in self._classes, pack=self._pack_of.get(name, ""))

    def specs(self) -> dict[str, NodeSpec]:
        """Specs of every node, cached until the registry changes (for search and listings)."""
        if self._spec_cache is None:
            cache: dict[str, NodeSpec] = {}
            for name in self.names():
                try:
                    cache[name] = self.spec(name)
                except Exception as exc:
                    log.warning("node %s has no usable spec: %s", name, exc)
            self._spec_cache = cache
        return self._spec_cache

    def socket_types(self) -> frozenset[str]:
        """Types some node outputs (MODEL, IMAGE ...): only a link, never a literal, can supply them."""
        if self._socket_types is None:
            from nodes.spec import ANY_TYPE, WIDGET_TYPES

            produced = {t.strip() for spec in self.specs().values() for out in spec.outputs
                        for t in out.type.split(",")}
            self._socket_types = frozenset(produced - WIDGET_TYPES - {ANY_TYPE})
        return self._socket_types

    # ---- the agent's tool catalog ----------------------------------------------------------------------
    def search(self, query: str = "", *, produces: str | None = None, consumes: str | None = None,
               category: str | None = None, limit: int = 10) -> list[SearchHit]:
        if self._index is None:
            self._index = NodeSearchIndex(self.specs())
        return self._index.search(query, produces=produces, consumes=consumes, category=category, limit=limit)

    def producers(self, socket_type: str, limit: int = 50) -> list[SearchHit]:
        return self.search("", produces=socket_type, limit=limit)

    def consumers(self, socket_type: str, limit: int = 50) -> list[SearchHit]:
        return self.search("", consumes=socket_type, limit=limit)

    def suggest(self, name: str, limit: int = 3) -> list[str]:
        """Known class names close to a misspelt one (for unknown-class errors), cached per name until the
        registry changes: a workflow repeats its unknown classes, and clients resend workflows."""
        key = (name, limit)
        found = self._suggestions.get(key)
        if found is None:
            if self._index is None:
                self._index = NodeSearchIndex(self.specs())
            if len(self._suggestions) >= SUGGEST_CACHE_SIZE:
                self._suggestions.clear()
            found = self._suggestions[key] = self._index.close_names(name, limit=limit)
        return list(found)

    def describe(self, name: str) -> str:
        from nodes.describe import describe_spec

        return describe_spec(self.spec(name))

    # ---- internals -----------------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._spec_cache = None
        self._socket_types = None
        self._index = None
        self._suggestions = {}

    def _record_error(self, pack: str, path: str, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.warning("node pack %s failed to load: %s", pack, detail)
        self.load_errors.append(PackLoadError(pack=pack, path=path, error=detail))


def combo_choices(spec: Any) -> list[Any] | None:
    """The choices of a combo input spec (old list form, or COMBO with options); None for other inputs."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return None


def _with_choices_of(info: dict[str, Any], remote: Mapping[str, Any]) -> dict[str, Any]:
    """`info` whose combo inputs also offer the choices the same input has in a remote entry."""
    theirs = remote.get("input")
    ours = info.get("input")
    if not isinstance(theirs, Mapping) or not isinstance(ours, dict):
        return info
    sections = {}
    for section, specs in ours.items():
        extra = theirs.get(section) if isinstance(theirs.get(section), Mapping) else {}
        merged = dict(specs) if isinstance(specs, dict) else specs
        for key, spec in (specs.items() if isinstance(specs, dict) else ()):
            mine, added = combo_choices(spec), combo_choices(extra.get(key))
            new = [c for c in added or [] if mine is not None and c not in mine]
            if not new:
                continue
            choices = [*mine, *new]
            merged[key] = [choices, *spec[1:]] if isinstance(spec[0], list) else \
                [spec[0], {**spec[1], "options": choices}, *spec[2:]]
        sections[section] = merged
    return {**info, "input": sections}


def _class_problem(name: str, cls: Any) -> str | None:
    if not isinstance(cls, type):
        return f"{name}: NODE_CLASS_MAPPINGS value is not a class"
    if not callable(getattr(cls, "INPUT_TYPES", None)):
        return f"{name}: class has no INPUT_TYPES classmethod"
    if not isinstance(getattr(cls, "RETURN_TYPES", None), tuple | list):
        return f"{name}: RETURN_TYPES must be a tuple"
    function = getattr(cls, "FUNCTION", None)
    if not isinstance(function, str) or not callable(getattr(cls, function, None)):
        return f"{name}: FUNCTION must name a method of the class"
    return None


def _is_pack(path: Path) -> bool:
    if path.name.startswith((".", "__")) or path.name.endswith(".disabled"):
        return False
    if path.is_file():
        return path.suffix == ".py"
    return path.is_dir() and (path / "__init__.py").is_file()


def _module_label(cls: type, pack: str) -> str:
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("nodes."):
        return module
    return f"custom_nodes.{pack}" if pack else module


_SAFE = re.compile(r"[^0-9A-Za-z_]")


def _import_pack(path: Path) -> ModuleType:
    """Import a pack under its own name (as ComfyUI does), so its relative imports work."""
    name = _SAFE.sub("_", path.stem if path.is_file() else path.name)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None):
        existing = Path(sys.modules[name].__file__ or "")
        wanted = path if path.is_file() else path / "__init__.py"
        if existing.resolve() != wanted.resolve():
            name = f"nodeweaver_custom_{name}"
    if path.is_file():
        spec = importlib.util.spec_from_file_location(name, path)
    else:
        spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                      submodule_search_locations=[str(path)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.append(parent)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_DEFAULT: dict[tuple[str, ...], NodeRegistry] = {}


def default_registry(custom_nodes: Iterable[Path] | None = None, *, fresh: bool = False) -> NodeRegistry:
    """Built-in packs plus the configured custom node packs; built once per process per configuration."""
    if custom_nodes is None:
        from runtime.settings import current

        custom_nodes = current().custom_nodes
    key = tuple(str(p) for p in custom_nodes)
    if fresh or key not in _DEFAULT:
        registry = NodeRegistry()
        registry.load_builtin_packs()
        if key:
            registry.load_custom_nodes([Path(p) for p in key])
        _DEFAULT[key] = registry
    return _DEFAULT[key]
