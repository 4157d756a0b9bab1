"""Stand-ins for the two ComfyUI modules that internals-free custom node packs import at load time.

`server` (PromptServer.instance.routes, send_sync) and `folder_paths` (model and input folders). They are
installed into `sys.modules` under those names before packs load, unless real ones are importable already.
"""

from __future__ import annotations

import importlib.util
import sys


def install_shims() -> None:
    """Register `server` and `folder_paths` for custom packs; idempotent, and never shadows real modules."""
    from nodes.comfy_compat import folder_paths, server

    for name, module in (("server", server), ("folder_paths", folder_paths)):
        if name in sys.modules:
            continue
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            sys.modules[name] = module
