"""Stand-in for ComfyUI's `comfy_execution` package (graph helpers packs import for expansion and blocking)."""
