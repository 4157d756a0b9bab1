"""Inpainting and outpainting nodes (ComfyUI names and semantics)."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
