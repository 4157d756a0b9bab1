"""Stand-in for ComfyUI's `comfy_api` package (versioned APIs that nodes call while they run)."""
