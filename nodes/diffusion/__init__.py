"""Diffusion node pack (ComfyUI names) on diffusers and torch; torch loads only when a node runs."""

from nodes.diffusion import image_nodes
from nodes.diffusion import nodes as model_nodes

NODE_CLASS_MAPPINGS: dict[str, type] = {**model_nodes.NODE_CLASS_MAPPINGS, **image_nodes.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {**model_nodes.NODE_DISPLAY_NAME_MAPPINGS,
                                              **image_nodes.NODE_DISPLAY_NAME_MAPPINGS}
