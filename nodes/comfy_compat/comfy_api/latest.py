"""ComfyUI's `comfy_api.latest`, as far as NodeWeaver supports it: the execution API (ComfyAPI, ComfyAPISync).

The V3 node schema (`io`, `ui`, `ComfyExtension`) is not provided: a pack importing it fails to load with a
clear ImportError naming the missing name, and the other packs still load.
"""

from __future__ import annotations

from nodes.comfy_compat.comfy_api.v0_0_2 import ComfyAPI, ComfyAPISync

__all__ = ["ComfyAPI", "ComfyAPISync"]
