"""Masks and compositing nodes (ComfyUI names and semantics), pure torch: MASK is [B,H,W] float 0..1,
IMAGE is [B,H,W,C] float 0..1."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
