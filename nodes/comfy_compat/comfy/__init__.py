"""Stand-in for ComfyUI's `comfy` package: only the modules custom packs use outside a ComfyUI install.

Installed as `comfy` by `install_shims()` when no real ComfyUI is importable.
"""
