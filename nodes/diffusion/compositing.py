"""Image compositing, filters and batches with ComfyUI's names, inputs and semantics (nodes.py and
comfy_extras/nodes_mask.py, nodes_images.py, nodes_post_processing.py, nodes_rebatch.py at v0.3.64), on torch.
IMAGE is [B, H, W, C] float 0..1; LATENT is {"samples": [B, 4, h, w], ...}. Registered through masks.py."""

from __future__ import annotations

import math
from typing import Any

from nodes.diffusion.image_nodes import MAX_RESOLUTION, upscale
from nodes.diffusion.models import torch_or_error

BLEND_MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


def repeat_to_batch(tensor, size: int):
    """The first `size` items, cycling through the batch when it is shorter (ComfyUI's repeat_to_batch_size)."""
    if tensor.shape[0] > size:
        return tensor[:size]
    if tensor.shape[0] < size:
        times = math.ceil(size / tensor.shape[0])
        return tensor.repeat(times, *[1] * (tensor.dim() - 1))[:size]
    return tensor


def match_channels(destination, source):
    """Equal channel counts: extra source channels are dropped, a missing alpha on the source is opaque."""
    torch = torch_or_error()
    if destination.shape[-1] < source.shape[-1]:
        return destination, source[..., :destination.shape[-1]]
    if destination.shape[-1] > source.shape[-1]:
        pad = destination.shape[-1] - source.shape[-1]
        return destination, torch.nn.functional.pad(source, (0, pad), value=1.0)
    return destination, source


def composite(destination, source, x: int, y: int, mask=None, multiplier: int = 1, resize_source: bool = False):
    """Paste source ([B, C, h, w]) into destination (changed in place) at (x, y) in units of 1/multiplier
    pixels, through the mask when given (resized to the source bilinearly), as ComfyUI's composite()."""
    torch = torch_or_error()
    functional = torch.nn.functional
    source = source.to(destination.device)
    if resize_source:
        source = functional.interpolate(source, size=tuple(destination.shape[-2:]), mode="bilinear")
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[-1] * multiplier, min(x, destination.shape[-1] * multiplier))
    y = max(-source.shape[-2] * multiplier, min(y, destination.shape[-2] * multiplier))
    left, top = x // multiplier, y // multiplier
    right, bottom = left + source.shape[-1], top + source.shape[-2]
    if mask is None:
        mask = torch.ones_like(source)
    else:
        mask = mask.to(destination.device, copy=True).reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
        mask = functional.interpolate(mask, size=tuple(source.shape[-2:]), mode="bilinear")
        mask = repeat_to_batch(mask, source.shape[0])
    visible_width = destination.shape[-1] - left + min(0, x)
    visible_height = destination.shape[-2] - top + min(0, y)
    mask = mask[:, :, :visible_height, :visible_width]
    source_part = mask * source[..., :visible_height, :visible_width]
    destination_part = (1.0 - mask) * destination[..., top:bottom, left:right]
    destination[..., top:bottom, left:right] = source_part + destination_part
    return destination


class ImageCompositeMasked:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "composite"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "destination": ("IMAGE",), "source": ("IMAGE",),
            "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "resize_source": ("BOOLEAN", {"default": False}),
        }, "optional": {"mask": ("MASK",)}}

    def composite(self, destination, source, x: int, y: int, resize_source: bool, mask=None):
        destination, source = match_channels(destination, source)
        target = destination.clone().movedim(-1, 1)
        output = composite(target, source.movedim(-1, 1), x, y, mask, 1, bool(resize_source))
        return (output.movedim(1, -1),)


def _blend(first, second, mode: str):
    torch = torch_or_error()
    if mode == "normal":
        return second
    if mode == "multiply":
        return first * second
    if mode == "screen":
        return 1 - (1 - first) * (1 - second)
    if mode == "overlay":
        return torch.where(first <= 0.5, 2 * first * second, 1 - 2 * (1 - first) * (1 - second))
    if mode == "soft_light":
        g = torch.where(first <= 0.25, ((16 * first - 12) * first + 4) * first, torch.sqrt(first))
        return torch.where(second <= 0.5, first - (1 - 2 * second) * first * (1 - first),
                           first + (2 * second - 1) * (g - first))
    if mode == "difference":
        return first - second
    raise ValueError(f"ImageBlend: blend_mode must be one of {BLEND_MODES} (got {mode!r})")


class ImageBlend:
    """image1 mixed with blend_mode(image1, image2) by blend_factor, clipped to 0..1; an image2 of another
    size is first resized to image1's (bicubic, center crop), as in ComfyUI."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"
    CATEGORY = "image/postprocessing"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image1": ("IMAGE",), "image2": ("IMAGE",),
            "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            "blend_mode": (BLEND_MODES,),
        }}

    def blend_images(self, image1, image2, blend_factor: float, blend_mode: str):
        torch = torch_or_error()
        image1, image2 = match_channels(image1, image2.to(image1.device))
        if image1.shape[1:3] != image2.shape[1:3]:
            resized = upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bicubic", "center")
            image2 = resized.movedim(1, -1)
        if image1.shape[0] != image2.shape[0] and 1 not in (image1.shape[0], image2.shape[0]):
            raise ValueError(f"ImageBlend: batches of {image1.shape[0]} and {image2.shape[0]} images cannot be "
                             f"blended (one of them must be a single image)")
        blended = _blend(image1, image2, blend_mode)
        return (torch.clamp(image1 * (1 - blend_factor) + blended * blend_factor, 0, 1),)


class ImageCrop:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "crop"
    CATEGORY = "image/transform"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE",),
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "x": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "y": ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
        }}

    def crop(self, image, width: int, height: int, x: int, y: int):
        x, y = min(x, image.shape[2] - 1), min(y, image.shape[1] - 1)  # at least one column and row remain
        return (image[:, y:y + height, x:x + width, :].clone(),)


def gaussian_kernel(size: int, sigma: float, device: Any = None):
    """ComfyUI's blur kernel: a Gaussian over a size x size grid spanning -1..1 (sigma in those units)."""
    torch = torch_or_error()
    axis = torch.linspace(-1, 1, size, device=device)
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    kernel = torch.exp(-(gx * gx + gy * gy) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def _filter(image, kernel, radius: int, what: str):
    """Convolve every channel with the kernel over a reflected border of `radius` pixels."""
    torch = torch_or_error()
    height, width, channels = image.shape[1], image.shape[2], image.shape[3]
    if radius >= height or radius >= width:
        raise ValueError(f"{what}: a radius of {radius} needs an image larger than {radius}x{radius} pixels "
                         f"(got {width}x{height})")
    weights = kernel.to(image.dtype).repeat(channels, 1, 1).unsqueeze(1)
    padded = torch.nn.functional.pad(image.movedim(-1, 1), (radius, radius, radius, radius), mode="reflect")
    return torch.nn.functional.conv2d(padded, weights, groups=channels).movedim(1, -1)


class ImageBlur:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"
    CATEGORY = "image/postprocessing"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE",),
            "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
        }}

    def blur(self, image, blur_radius: int, sigma: float):
        if blur_radius == 0:
            return (image,)
        kernel = gaussian_kernel(blur_radius * 2 + 1, sigma, device=image.device)
        return (_filter(image, kernel, blur_radius, "ImageBlur"),)


class ImageSharpen:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"
    CATEGORY = "image/postprocessing"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE",),
            "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01}),
            "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01}),
        }}

    def sharpen(self, image, sharpen_radius: int, sigma: float, alpha: float):
        torch = torch_or_error()
        if sharpen_radius == 0:
            return (image,)
        size = sharpen_radius * 2 + 1
        kernel = (gaussian_kernel(size, sigma, device=image.device) * -(alpha * 10)).to(image.dtype)
        center = size // 2
        kernel[center, center] = kernel[center, center] - kernel.sum() + 1.0  # weights sum to 1
        return (torch.clamp(_filter(image, kernel, sharpen_radius, "ImageSharpen"), 0, 1),)


class EmptyImage:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
        }}

    def generate(self, width: int, height: int, batch_size: int = 1, color: int = 0):
        torch = torch_or_error()
        rgb = [((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
        return (torch.tensor(rgb, dtype=torch.float32).expand(batch_size, height, width, 3).clone(),)


class ImageBatch:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image1": ("IMAGE",), "image2": ("IMAGE",)}}

    def batch(self, image1, image2):
        torch = torch_or_error()
        if image1.shape[-1] != image2.shape[-1]:
            raise ValueError(f"ImageBatch: images with {image1.shape[-1]} and {image2.shape[-1]} channels "
                             f"cannot share a batch")
        if image1.shape[1:] != image2.shape[1:]:  # image2 takes image1's size, as in ComfyUI
            image2 = upscale(image2.movedim(-1, 1), image1.shape[2], image1.shape[1], "bilinear", "center")
            image2 = image2.movedim(1, -1)
        return (torch.cat((image1, image2.to(image1.device)), dim=0),)


class RepeatImageBatch:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"
    CATEGORY = "image/batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "amount": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def repeat(self, image, amount: int):
        return (image.repeat((amount, 1, 1, 1)),)


def _latent_items(latent: dict, offset: int) -> list[tuple[Any, Any, int]]:
    """(samples [1, C, h, w], noise mask [1, 1, 8h, 8w], batch index) for each latent of a batch."""
    torch = torch_or_error()
    samples = latent["samples"]
    batch, height, width = samples.shape[0], samples.shape[-2] * 8, samples.shape[-1] * 8
    mask = latent.get("noise_mask")
    if mask is None:
        mask = torch.ones((batch, 1, height, width))
    else:
        mask = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).float()
        if tuple(mask.shape[-2:]) != (height, width):
            mask = torch.nn.functional.interpolate(mask, size=(height, width), mode="bilinear")
        mask = repeat_to_batch(mask, batch)
    indexes = list(latent.get("batch_index") or range(offset, offset + batch))
    return [(samples[i:i + 1], mask[i:i + 1], int(indexes[i])) for i in range(batch)]


class RebatchLatents:
    """The latents of every incoming batch regrouped into batches of batch_size, a new batch starting where
    the size changes; noise masks and batch indexes travel with their latents (all-ones masks are dropped)."""

    RETURN_TYPES = ("LATENT",)
    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "rebatch"
    CATEGORY = "latent/batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"latents": ("LATENT",), "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def rebatch(self, latents: list[dict], batch_size: list[int]):
        size = batch_size[0]
        if size < 1:
            raise ValueError(f"RebatchLatents: batch_size must be at least 1 (got {size})")
        runs: list[list[tuple[Any, Any, int]]] = []
        offset = 0
        for latent in latents:
            items = _latent_items(latent, offset)
            offset += len(items)
            if runs and runs[-1][0][0].shape[-2:] == items[0][0].shape[-2:]:
                runs[-1].extend(items)
            elif items:
                runs.append(items)
        return ([self._batch(run[start:start + size]) for run in runs for start in range(0, len(run), size)],)

    @staticmethod
    def _batch(group: list[tuple[Any, Any, int]]) -> dict:
        torch = torch_or_error()
        out: dict[str, Any] = {"samples": torch.cat([item[0] for item in group])}
        mask = torch.cat([item[1] for item in group])
        if mask.mean() != 1.0:
            out["noise_mask"] = mask
        out["batch_index"] = [item[2] for item in group]
        return out


def _feather_mask(like, feather: int, edges: tuple[bool, bool, bool, bool]):
    """LatentComposite's blend weights: linear ramps of `feather` latent pixels on the inner edges
    (top, bottom, left, right flags say which edges lie inside the destination)."""
    torch = torch_or_error()
    mask = torch.ones_like(like)
    top, bottom, left, right = edges
    for t in range(feather):
        rate = (1.0 / feather) * (t + 1)
        if top:
            mask[:, :, t:1 + t, :] *= rate
        if bottom:
            mask[:, :, mask.shape[2] - 1 - t:mask.shape[2] - t, :] *= rate
        if left:
            mask[:, :, :, t:1 + t] *= rate
        if right:
            mask[:, :, :, mask.shape[3] - 1 - t:mask.shape[3] - t] *= rate
    return mask


class LatentComposite:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        position = ("INT", {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8})
        return {"required": {"samples_to": ("LATENT",), "samples_from": ("LATENT",),
                             "x": position, "y": position, "feather": position}}

    def composite(self, samples_to: dict, samples_from: dict, x: int, y: int, feather: int = 0):
        x, y, feather = x // 8, y // 8, feather // 8
        target = samples_to["samples"]
        out = dict(samples_to)
        result = target.clone()
        source = samples_from["samples"][:, :, :max(0, target.shape[2] - y), :max(0, target.shape[3] - x)]
        if source.shape[0] not in (1, target.shape[0]):
            raise ValueError(f"LatentComposite: a batch of {source.shape[0]} latents cannot be pasted into a "
                             f"batch of {target.shape[0]} (give one latent, or as many as samples_to has)")
        if source.shape[2] == 0 or source.shape[3] == 0:  # placed past the edge: nothing to paste
            out["samples"] = result
            return (out,)
        region = (slice(None), slice(None), slice(y, y + source.shape[2]), slice(x, x + source.shape[3]))
        if feather == 0:
            result[region] = source.to(result)
        else:
            edges = (y != 0, y + source.shape[2] < target.shape[2], x != 0, x + source.shape[3] < target.shape[3])
            mask = _feather_mask(source, feather, edges)
            result[region] = source.to(result) * mask + result[region] * (1.0 - mask)
        out["samples"] = result
        return (out,)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "ImageCompositeMasked": ImageCompositeMasked, "ImageBlend": ImageBlend, "ImageCrop": ImageCrop,
    "ImageBlur": ImageBlur, "ImageSharpen": ImageSharpen, "EmptyImage": EmptyImage, "ImageBatch": ImageBatch,
    "RepeatImageBatch": RepeatImageBatch, "RebatchLatents": RebatchLatents, "LatentComposite": LatentComposite,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "ImageCrop": "Image Crop", "ImageBatch": "Batch Images", "RebatchLatents": "Rebatch Latents",
    "LatentComposite": "Latent Composite",
}
