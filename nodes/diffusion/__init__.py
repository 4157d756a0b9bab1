"""Diffusion node pack (ComfyUI names) on diffusers and torch; torch loads only when a node runs."""

from nodes.diffusion import controlnet, image_nodes, inpaint, masks, upscale_models
from nodes.diffusion import nodes as model_nodes

_MODULES = (model_nodes, image_nodes, masks, inpaint, upscale_models, controlnet)
NODE_CLASS_MAPPINGS: dict[str, type] = {name: cls for m in _MODULES for name, cls in m.NODE_CLASS_MAPPINGS.items()}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {name: label for m in _MODULES
                                              for name, label in m.NODE_DISPLAY_NAME_MAPPINGS.items()}
