"""Upscale-model nodes (ComfyUI names): UpscaleModelLoader and ImageUpscaleWithModel."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
