"""Stand-ins for the ComfyUI modules that custom node packs import at load and run time.

`server` (PromptServer.instance.routes, send_sync), `folder_paths` (model and input folders), the `comfy`
package (utils, model_management, comfy_types), `comfy_execution` (graph_utils, graph) and `comfy_api`
(v0_0_2, and latest: its execution API, the V3 node schema `io`/`ui` and ComfyExtension). They are installed
into `sys.modules` under ComfyUI's names before packs load, each top-level name only when no real module of
that name is importable: inside a ComfyUI install the real ones win.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# ComfyUI name -> our module; a package's submodules follow it, so they are installed (or not) together.
SHIMS: dict[str, tuple[tuple[str, str], ...]] = {
    "server": (("server", "nodes.comfy_compat.server"),),
    "folder_paths": (("folder_paths", "nodes.comfy_compat.folder_paths"),),
    "comfy": (
        ("comfy", "nodes.comfy_compat.comfy"),
        ("comfy.utils", "nodes.comfy_compat.comfy.utils"),
        ("comfy.model_management", "nodes.comfy_compat.comfy.model_management"),
        ("comfy.comfy_types", "nodes.comfy_compat.comfy.comfy_types"),
        ("comfy.comfy_types.node_typing", "nodes.comfy_compat.comfy.comfy_types.node_typing"),
    ),
    "comfy_execution": (
        ("comfy_execution", "nodes.comfy_compat.comfy_execution"),
        ("comfy_execution.graph_utils", "nodes.comfy_compat.comfy_execution.graph_utils"),
        ("comfy_execution.graph", "nodes.comfy_compat.comfy_execution.graph"),
    ),
    "comfy_api": (
        ("comfy_api", "nodes.comfy_compat.comfy_api"),
        ("comfy_api.v0_0_2", "nodes.comfy_compat.comfy_api.v0_0_2"),
        ("comfy_api.latest", "nodes.comfy_compat.comfy_api.latest"),
        ("comfy_api.latest._io", "nodes.comfy_compat.comfy_api.latest._io"),
        ("comfy_api.latest._ui", "nodes.comfy_compat.comfy_api.latest._ui"),
    ),
}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install_shims() -> list[str]:
    """Register the stand-ins for custom packs; idempotent, never shadows real modules. Returns the names
    installed by this call."""
    installed: list[str] = []
    for top, modules in SHIMS.items():
        if top in sys.modules or _importable(top):
            continue
        for comfy_name, ours in modules:
            module = importlib.import_module(ours)
            sys.modules[comfy_name] = module
            parent, _, child = comfy_name.rpartition(".")
            if parent:
                # `import comfy.utils; comfy.utils.ProgressBar` needs the attribute on the parent too.
                setattr(sys.modules[parent], child, module)
            installed.append(comfy_name)
    return installed
