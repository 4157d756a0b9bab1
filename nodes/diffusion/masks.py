"""Mask nodes with ComfyUI's names, inputs and semantics (nodes.py and comfy_extras/nodes_mask.py at v0.3.64),
written on torch: MASK is [B, H, W] float 0..1, IMAGE is [B, H, W, C] float 0..1. The image compositing and
batch nodes live in compositing.py and are registered through this module's mappings."""

from __future__ import annotations

import hashlib
from typing import Any

from nodes.diffusion import compositing
from nodes.diffusion.image_nodes import (
    MAX_RESOLUTION,
    LoadImage,
    _check_input_size,
    _open_image,
    _oriented,
)
from nodes.diffusion.models import torch_or_error
from runtime import folders
from runtime.errors import BadRequest

CHANNELS = ["red", "green", "blue", "alpha"]
MASK_OPERATIONS = ["multiply", "add", "subtract", "and", "or", "xor"]


def as_masks(mask):
    """Any MASK ([H, W], [B, H, W] or [B, 1, H, W]) as [B, H, W], as ComfyUI's mask nodes reshape it."""
    return mask.reshape((-1, mask.shape[-2], mask.shape[-1]))


class LoadImageMask:
    """One channel of an input image as a MASK; alpha is inverted (opaque = 0) as in ComfyUI."""

    DESCRIPTION = "Loads one channel of an image from the input folder as a mask (alpha is inverted)."
    RETURN_TYPES = ("MASK",)
    FUNCTION = "load_image"
    CATEGORY = "mask"
    _color_channels = ["alpha", "red", "green", "blue"]

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": (folders.input_files(folders.IMAGE_EXTENSIONS), {"image_upload": True}),
                             "channel": (cls._color_channels,)}}

    @classmethod
    def IS_CHANGED(cls, image: str, channel: str = "alpha") -> str:
        try:
            return hashlib.sha256(folders.input_path(image).read_bytes()).hexdigest()
        except (OSError, folders.UnsafePathError):
            return "missing"

    @classmethod
    def VALIDATE_INPUTS(cls, image: Any = None) -> bool | str:
        """The same checks as LoadImage: the file is in the input folder and within the size bounds."""
        return LoadImage.VALIDATE_INPUTS(image)

    def load_image(self, image: str, channel: str):
        torch = torch_or_error()
        import numpy as np

        if channel not in self._color_channels:
            raise ValueError(f"LoadImageMask: channel must be one of {self._color_channels} (got {channel!r})")
        with _open_image(folders.input_path(image), image) as opened:
            _check_input_size(image, 1, *opened.size)  # only the first frame is read, as in ComfyUI
            try:
                frame = _oriented(opened)
                if frame.getbands() != ("R", "G", "B", "A"):
                    if frame.mode == "I":  # 32-bit integer images, scaled as ComfyUI does
                        frame = frame.point(lambda value: value * (1 / 255))
                    frame = frame.convert("RGBA")
                plane = np.asarray(frame.getchannel(channel[0].upper())).astype(np.float32) / 255.0
            except (OSError, EOFError, SyntaxError) as exc:
                raise BadRequest(f"input image {image!r} cannot be decoded (damaged or truncated): {exc}") from exc
        mask = torch.from_numpy(plane)
        if channel == "alpha":
            mask = 1.0 - mask
        return (mask.unsqueeze(0),)


class SolidMask:
    RETURN_TYPES = ("MASK",)
    FUNCTION = "solid"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "value": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
        }}

    def solid(self, value: float, width: int, height: int):
        torch = torch_or_error()
        return (torch.full((1, height, width), float(value), dtype=torch.float32),)


class InvertMask:
    RETURN_TYPES = ("MASK",)
    FUNCTION = "invert"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask):
        return (1.0 - mask,)


def _combine(destination, source, operation: str):
    """ComfyUI's MaskComposite arithmetic on two aligned regions (the logic ones threshold at 0.5)."""
    torch = torch_or_error()
    if operation == "multiply":
        return destination * source
    if operation == "add":
        return destination + source
    if operation == "subtract":
        return destination - source
    logic = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}.get(operation)
    if logic is None:
        raise ValueError(f"MaskComposite: operation must be one of {MASK_OPERATIONS} (got {operation!r})")
    return logic(destination.round().bool(), source.round().bool()).float()


class MaskComposite:
    """Source combined into destination at (x, y); the result is clipped to 0..1 everywhere."""

    RETURN_TYPES = ("MASK",)
    FUNCTION = "combine"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "destination": ("MASK",), "source": ("MASK",),
            "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "operation": (MASK_OPERATIONS,),
        }}

    def combine(self, destination, source, x: int, y: int, operation: str):
        torch = torch_or_error()
        output = as_masks(destination).clone()
        source = as_masks(source).to(output.device)
        if output.shape[0] != source.shape[0]:
            if output.shape[0] != 1 and source.shape[0] != 1:
                raise ValueError(f"MaskComposite: batches of {output.shape[0]} and {source.shape[0]} masks "
                                 f"cannot be combined (one of them must be a single mask)")
            output = output.expand(max(output.shape[0], source.shape[0]), -1, -1).clone()
        right = min(x + source.shape[-1], output.shape[-1])
        bottom = min(y + source.shape[-2], output.shape[-2])
        if right > x and bottom > y:  # a source placed past the destination's edge changes nothing
            region = output[:, y:bottom, x:right]
            output[:, y:bottom, x:right] = _combine(region, source[:, :bottom - y, :right - x], operation)
        return (torch.clamp(output, 0.0, 1.0),)


class FeatherMask:
    """Linear fades over the given number of pixels at each edge, computed exactly as ComfyUI does: its
    right and bottom loops index columns/rows -0..-(n-1), so the fade there starts at 2/n on the outermost
    line and the first column/row also takes a 1/n factor; kept so masks match ComfyUI's."""

    RETURN_TYPES = ("MASK",)
    FUNCTION = "feather"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        edge = ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1})
        return {"required": {"mask": ("MASK",), "left": edge, "top": edge, "right": edge, "bottom": edge}}

    def feather(self, mask, left: int, top: int, right: int, bottom: int):
        output = as_masks(mask).clone()
        width, height = output.shape[-1], output.shape[-2]
        left, right = min(left, width), min(right, width)
        top, bottom = min(top, height), min(bottom, height)
        for i in range(left):
            output[:, :, i] *= (i + 1.0) / left
        for i in range(right):
            output[:, :, -i] *= (i + 1.0) / right
        for i in range(top):
            output[:, i, :] *= (i + 1.0) / top
        for i in range(bottom):
            output[:, -i, :] *= (i + 1.0) / bottom
        return (output,)


def _morph_step(masks, tapered: bool, grow: bool):
    """One grey dilation (grow) or erosion with a 3x3 footprint, a cross when tapered; like scipy.ndimage's
    grey_dilation/grey_erosion in 'reflect' mode, whose one-pixel border repeats the edge pixel."""
    torch = torch_or_error()
    padded = torch.nn.functional.pad(masks.unsqueeze(1), (1, 1, 1, 1), mode="replicate").squeeze(1)
    height, width = masks.shape[-2], masks.shape[-1]
    offsets = [(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)]
    if not tapered:
        offsets += [(0, 0), (0, 2), (2, 0), (2, 2)]
    shifted = torch.stack([padded[:, dy:dy + height, dx:dx + width] for dy, dx in offsets])
    return shifted.amax(dim=0) if grow else shifted.amin(dim=0)


class GrowMask:
    """Grows (expand > 0) or shrinks the mask by that many pixels; tapered corners grow as a diamond."""

    RETURN_TYPES = ("MASK",)
    FUNCTION = "expand_mask"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "mask": ("MASK",),
            "expand": ("INT", {"default": 0, "min": -MAX_RESOLUTION, "max": MAX_RESOLUTION, "step": 1}),
            "tapered_corners": ("BOOLEAN", {"default": True}),
        }}

    def expand_mask(self, mask, expand: int, tapered_corners: bool):
        output = as_masks(mask).float().clone()
        # past height + width steps every pixel has seen the whole mask: more steps change nothing
        steps = min(abs(expand), output.shape[-1] + output.shape[-2])
        for _ in range(steps):
            output = _morph_step(output, bool(tapered_corners), grow=expand > 0)
        return (output,)


class ThresholdMask:
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"mask": ("MASK",),
                             "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def image_to_mask(self, mask, value: float):
        return ((mask > value).float(),)


class MaskToImage:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "mask_to_image"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask):
        return (as_masks(mask).unsqueeze(-1).expand(-1, -1, -1, 3).clone(),)


class ImageToMask:
    RETURN_TYPES = ("MASK",)
    FUNCTION = "image_to_mask"
    CATEGORY = "mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "channel": (CHANNELS,)}}

    def image_to_mask(self, image, channel: str):
        if channel not in CHANNELS:
            raise ValueError(f"ImageToMask: channel must be one of {CHANNELS} (got {channel!r})")
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise ValueError(f"ImageToMask: the image has {image.shape[-1]} channels, so no {channel} channel")
        return (image[:, :, :, index].clone(),)


_MASK_CLASSES = {
    "LoadImageMask": LoadImageMask, "SolidMask": SolidMask, "InvertMask": InvertMask,
    "MaskComposite": MaskComposite, "FeatherMask": FeatherMask, "GrowMask": GrowMask,
    "ThresholdMask": ThresholdMask, "MaskToImage": MaskToImage, "ImageToMask": ImageToMask,
}
NODE_CLASS_MAPPINGS: dict[str, type] = {**_MASK_CLASSES, **compositing.NODE_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "LoadImageMask": "Load Image (as Mask)", "ImageToMask": "Convert Image to Mask",
    "MaskToImage": "Convert Mask to Image", **compositing.NODE_DISPLAY_NAME_MAPPINGS,
}
