"""A small custom pack that imports ComfyUI's modules the way third-party packs do.

Loading it proves the stand-ins for `comfy`, `comfy_execution`, `comfy_api`, `server`, `folder_paths` and
ComfyUI's `nodes` module are installed; running its nodes proves they work inside the engine.
"""

from .compat_nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
