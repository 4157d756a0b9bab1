"""Inpainting and outpainting nodes (ComfyUI names and semantics): VAEEncodeForInpaint, SetLatentNoiseMask,
InpaintModelConditioning, ImagePadForOutpaint.

A LATENT's `noise_mask` (1 = redraw) is honoured by KSampler (nodes.diffusion.sampling): outside the mask the
original latent is kept at every step. InpaintModelConditioning's `concat_latent_image` / `concat_mask` feed
an inpainting checkpoint's extra UNet channels. IMAGE is [B, H, W, C] in 0..1, MASK [B, H, W] in 0..1.
"""

from __future__ import annotations

import math
from typing import Any

from nodes.diffusion.models import torch_or_error
from runtime.errors import BadRequest, TooLarge

MAX_RESOLUTION = 16384
LATENT_MULTIPLE = 8  # InpaintModelConditioning crops to multiples of 8 whatever the VAE (as ComfyUI)


def _check_image(pixels: Any, what: str, torch) -> None:
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or pixels.shape[-1] < 3:
        shape = list(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise BadRequest(f"{what}: pixels must be an IMAGE [batch, height, width, channels>=3]; got {shape}")


def _mask_at(mask: Any, pixels, what: str, torch):
    """The MASK as [B, 1, H, W] at the image's size (bilinear, as ComfyUI), its batch 1 or the image's."""
    if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3, 4) or 0 in mask.shape:
        shape = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise BadRequest(f"{what}: mask must be a MASK [batch, height, width]; got {shape}")
    mask = mask.float().reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    if mask.shape[0] not in (1, pixels.shape[0]):
        raise BadRequest(f"{what}: the mask batch ({mask.shape[0]}) must be 1 or the image batch "
                         f"({pixels.shape[0]})", details={"mask_batch": mask.shape[0], "image_batch": pixels.shape[0]})
    return torch.nn.functional.interpolate(mask, size=(pixels.shape[1], pixels.shape[2]), mode="bilinear")


def _crop_to_multiple(pixels, mask, multiple: int, what: str):
    """Centre-crop image (and mask) to multiples of `multiple`, as ComfyUI's inpaint encoders do."""
    height, width = (pixels.shape[1] // multiple) * multiple, (pixels.shape[2] // multiple) * multiple
    if height == 0 or width == 0:
        raise BadRequest(f"{what}: the image ({pixels.shape[2]}x{pixels.shape[1]}) is smaller than "
                         f"{multiple} pixels")
    top, left = (pixels.shape[1] % multiple) // 2, (pixels.shape[2] % multiple) // 2
    pixels = pixels[:, top:top + height, left:left + width, :]
    if mask is not None:
        mask = mask[:, :, top:top + height, left:left + width]
    return pixels, mask


def _grey_out(pixels, mask):
    """Masked pixels (mask rounded to 0/1) set to 0.5 grey, the rest untouched: the inpaint encoders' input."""
    keep = (1.0 - mask.round()).squeeze(1).unsqueeze(-1)
    out = pixels.clone()
    out[..., :3] = (out[..., :3] - 0.5) * keep + 0.5
    return out


def _encode(vae, pixels):
    from nodes.diffusion.image_nodes import VAEEncode

    return VAEEncode().encode(vae, pixels)[0]["samples"]


def grow_mask(mask, grow_by: int, torch):
    """ComfyUI's seam margin: the rounded mask convolved with a grow_by x grow_by box, clamped to 0..1
    (an even kernel grows one pixel more down and right, as ComfyUI's padding does)."""
    if grow_by == 0:
        return mask
    kernel = torch.ones((1, 1, grow_by, grow_by))
    padding = math.ceil((grow_by - 1) / 2)
    return torch.clamp(torch.nn.functional.conv2d(mask.round(), kernel, padding=padding), 0, 1)


class VAEEncodeForInpaint:
    DESCRIPTION = ("Encodes an image for inpainting: the masked region is greyed out before encoding and the "
                   "latent carries the grown mask as its noise mask, so sampling redraws only that region.")
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent/inpaint"
    USES_GPU = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",), "mask": ("MASK",),
                             "grow_mask_by": ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})}}

    def encode(self, vae, pixels, mask, grow_mask_by: int = 6):
        torch = torch_or_error()
        what = "VAEEncodeForInpaint"
        _check_image(pixels, what, torch)
        mask = _mask_at(mask, pixels, what, torch)
        pixels, mask = _crop_to_multiple(pixels, mask, vae.downscale, what)
        grown = grow_mask(mask, int(grow_mask_by), torch)
        samples = _encode(vae, _grey_out(pixels, mask))
        return ({"samples": samples, "noise_mask": grown[:, :, :pixels.shape[1], :pixels.shape[2]].round()},)


class SetLatentNoiseMask:
    DESCRIPTION = "Attaches a mask to a latent so sampling redraws only the masked region (1 = redraw)."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"
    CATEGORY = "latent/inpaint"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    def set_mask(self, samples: dict, mask):
        torch = torch_or_error()
        if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3, 4) or 0 in mask.shape:
            shape = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise BadRequest(f"SetLatentNoiseMask: mask must be a MASK [batch, height, width]; got {shape}")
        out = dict(samples)
        out["noise_mask"] = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        return (out,)


def set_conditioning_values(conditioning: list, values: dict) -> list:
    """ComfyUI's conditioning_set_values: each entry's options copied, with `values` set."""
    return [[entry[0], {**(entry[1] if len(entry) > 1 else {}), **values}] for entry in conditioning]


class InpaintModelConditioning:
    DESCRIPTION = ("Prepares conditioning for an inpainting checkpoint (its extra UNet channels get the mask "
                   "and the greyed-out image) and the original image's latent, optionally with a noise mask.")
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"
    CATEGORY = "conditioning/inpaint"
    USES_GPU = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "vae": ("VAE",), "pixels": ("IMAGE",),
            "mask": ("MASK",),
            "noise_mask": ("BOOLEAN", {"default": True, "tooltip": (
                "Add a noise mask to the latent so sampling will only happen within the mask. Might improve "
                "results or completely break things depending on the model.")}),
        }}

    def encode(self, positive, negative, pixels, vae, mask, noise_mask: bool = True):
        torch = torch_or_error()
        what = "InpaintModelConditioning"
        _check_image(pixels, what, torch)
        mask = _mask_at(mask, pixels, what, torch)
        cropped, mask = _crop_to_multiple(pixels, mask, LATENT_MULTIPLE, what)
        concat_latent = _encode(vae, _grey_out(cropped, mask))
        original, _ = _crop_to_multiple(pixels, None, vae.downscale, what)  # the VAE's own centre crop
        latent: dict[str, Any] = {"samples": _encode(vae, original)}
        if noise_mask:
            latent["noise_mask"] = mask
        values = {"concat_latent_image": concat_latent, "concat_mask": mask}
        return (set_conditioning_values(positive, values), set_conditioning_values(negative, values), latent)


def outpaint_mask(height: int, width: int, sides: dict[str, int], feathering: int, torch):
    """The original area's mask of ImagePadForOutpaint: 0 inside, rising as ((f - d) / f)^2 within
    `feathering` pixels of a padded side (d = distance to the nearest padded edge); all 0 when the image
    is not more than twice the feathering in both sides."""
    if feathering <= 0 or feathering * 2 >= height or feathering * 2 >= width:
        return torch.zeros((height, width), dtype=torch.float32)
    rows = torch.arange(height, dtype=torch.float64).unsqueeze(1).expand(height, width)
    cols = torch.arange(width, dtype=torch.float64).unsqueeze(0).expand(height, width)
    far_h, far_w = torch.full_like(rows, height), torch.full_like(cols, width)
    distance = torch.stack([rows if sides["top"] else far_h, height - rows if sides["bottom"] else far_h,
                            cols if sides["left"] else far_w, width - cols if sides["right"] else far_w])
    nearest = distance.min(dim=0).values
    ramp = (feathering - nearest) / feathering
    return torch.where(nearest < feathering, ramp * ramp, torch.zeros_like(ramp)).to(torch.float32)


class ImagePadForOutpaint:
    DESCRIPTION = ("Pads an image with grey for outpainting; the mask is 1 over the padding and feathered into "
                   "the original near the padded sides.")
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        side = ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8})
        return {"required": {"image": ("IMAGE",), "left": side, "top": side, "right": side, "bottom": side,
                             "feathering": ("INT", {"default": 40, "min": 0, "max": MAX_RESOLUTION, "step": 1})}}

    def expand_image(self, image, left: int, top: int, right: int, bottom: int, feathering: int):
        torch = torch_or_error()
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            raise BadRequest("ImagePadForOutpaint: image must be an IMAGE [batch, height, width, channels]")
        batch, height, width, channels = image.shape
        new_h, new_w = height + top + bottom, width + left + right
        _check_padded_size(batch, new_w, new_h)
        padded = torch.full((batch, new_h, new_w, channels), 0.5, dtype=torch.float32)
        padded[:, top:top + height, left:left + width, :] = image
        mask = torch.ones((new_h, new_w), dtype=torch.float32)
        sides = {"left": left, "top": top, "right": right, "bottom": bottom}
        mask[top:top + height, left:left + width] = outpaint_mask(height, width, sides, feathering, torch)
        return (padded, mask.unsqueeze(0))


def _check_padded_size(batch: int, width: int, height: int) -> None:
    """The padded image within the configured pixel bound, so a huge padding is a clear error, not an OOM."""
    from nodes.diffusion.image_nodes import _input_limits

    _frames, max_pixels, how = _input_limits()
    if batch * width * height > max_pixels:
        raise TooLarge(f"ImagePadForOutpaint: the padded image would be {batch} x {width}x{height} = "
                       f"{batch * width * height:,} pixels, over the limit of {max_pixels:,}; pad less or {how}",
                       details={"width": width, "height": height, "batch": batch, "max_pixels": max_pixels})


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "VAEEncodeForInpaint": VAEEncodeForInpaint,
    "SetLatentNoiseMask": SetLatentNoiseMask,
    "InpaintModelConditioning": InpaintModelConditioning,
    "ImagePadForOutpaint": ImagePadForOutpaint,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "VAEEncodeForInpaint": "VAE Encode (for Inpainting)",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
    "InpaintModelConditioning": "InpaintModelConditioning",
    "ImagePadForOutpaint": "Pad Image for Outpainting",
}
