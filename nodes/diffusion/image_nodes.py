"""Latent and image nodes: EmptyLatentImage, VAEDecode/Encode, latent and image scaling, LoadImage,
SaveImage, PreviewImage, ImageInvert, RebatchImages. IMAGE is a float tensor [B, H, W, C] in 0..1, as in
ComfyUI."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from nodes.diffusion.models import torch_or_error
from runtime import folders
from runtime.errors import BadRequest, NodeWeaverError, TooLarge

MAX_RESOLUTION = 16384
LATENT_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
IMAGE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CROP = ["disabled", "center"]


def to_uint8(pixels):
    """Float pixels in 0..1 (a tensor or array) as 8-bit, truncating like ComfyUI (0.5 -> 127, not 128), so
    saved files match ComfyUI's byte for byte."""
    import numpy as np

    array = pixels.detach().cpu().numpy() if hasattr(pixels, "detach") else np.asarray(pixels)
    return np.clip(255.0 * array, 0, 255).astype(np.uint8)


def _center_crop(samples, width: int, height: int):
    old_w, old_h = samples.shape[3], samples.shape[2]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples.narrow(-2, y, old_h - y * 2).narrow(-1, x, old_w - x * 2)


def upscale(samples, width: int, height: int, method: str, crop: str):
    """Resize [B, C, H, W]; like ComfyUI's common_upscale (bislerp falls back to bilinear)."""
    torch = torch_or_error()
    if crop == "center":
        samples = _center_crop(samples, width, height)
    if method == "lanczos":
        import numpy as np
        from PIL import Image

        out = []
        for item in samples:
            array = to_uint8(item.movedim(0, -1))
            image = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
            image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
            tensor = torch.from_numpy(np.asarray(image).astype("float32") / 255.0)
            out.append(tensor.unsqueeze(-1) if tensor.dim() == 2 else tensor)
        return torch.stack(out).movedim(-1, 1)
    mode = {"bislerp": "bilinear"}.get(method, method)
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=mode, **kwargs)


def _size_check(width: int, height: int, what: str) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"{what}: width and height must be positive (got {width}x{height})")


class EmptyLatentImage:
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                              "tooltip": "The width of the latent images in pixels."}),
            "height": ("INT", {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8,
                               "tooltip": "The height of the latent images in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                   "tooltip": "The number of latent images in the batch."}),
        }}

    def generate(self, width: int, height: int, batch_size: int = 1):
        torch = torch_or_error()
        return ({"samples": torch.zeros([batch_size, 4, height // 8, width // 8])},)


class LatentUpscale:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "samples": ("LATENT",), "upscale_method": (LATENT_METHODS,),
            "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
            "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}),
            "crop": (CROP,),
        }}

    def upscale(self, samples: dict, upscale_method: str, width: int, height: int, crop: str):
        latent = samples["samples"]
        if width == 0 and height == 0:
            return (samples,)
        if width == 0:
            width = max(64, round(latent.shape[3] * height / latent.shape[2]))
        elif height == 0:
            height = max(64, round(latent.shape[2] * width / latent.shape[3]))
        out = dict(samples)
        out["samples"] = upscale(latent, width // 8, height // 8, upscale_method, crop)
        return (out,)


class LatentUpscaleBy:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT",), "upscale_method": (LATENT_METHODS,),
                             "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, samples: dict, upscale_method: str, scale_by: float):
        latent = samples["samples"]
        width, height = round(latent.shape[3] * scale_by), round(latent.shape[2] * scale_by)
        _size_check(width, height, "LatentUpscaleBy")
        out = dict(samples)
        out["samples"] = upscale(latent, width, height, upscale_method, "disabled")
        return (out,)


class VAEDecode:
    DESCRIPTION = "Decodes latent images back into pixel space images."
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("The decoded image.",)
    FUNCTION = "decode"
    CATEGORY = "latent"
    USES_GPU = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT", {"tooltip": "The latent to be decoded."}),
                             "vae": ("VAE", {"tooltip": "The VAE model used for decoding the latent."})}}

    def decode(self, vae, samples: dict):
        torch = torch_or_error()
        latents = samples["samples"]
        images = []
        with torch.inference_mode():
            for start in range(0, latents.shape[0], 4):
                chunk = latents[start:start + 4].to(vae.device, vae.dtype) / vae.scaling_factor
                decoded = vae.vae.decode(chunk).sample.float()
                images.append(((decoded + 1.0) / 2.0).clamp(0, 1).movedim(1, -1).cpu())
        return (torch.cat(images),)


class VAEEncode:
    DESCRIPTION = "Encodes images into latents with the VAE."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "encode"
    CATEGORY = "latent"
    USES_GPU = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"pixels": ("IMAGE",), "vae": ("VAE",)}}

    def encode(self, vae, pixels):
        torch = torch_or_error()
        factor = vae.downscale
        height, width = (pixels.shape[1] // factor) * factor, (pixels.shape[2] // factor) * factor
        if height == 0 or width == 0:
            raise ValueError(f"the image ({pixels.shape[2]}x{pixels.shape[1]}) is smaller than {factor} pixels")
        # centred, as ComfyUI's vae_encode_crop_pixels: the odd pixels are split between both edges
        top, left = (pixels.shape[1] - height) // 2, (pixels.shape[2] - width) // 2
        pixels = pixels[:, top:top + height, left:left + width, :3]
        latents = []
        with torch.inference_mode():
            for start in range(0, pixels.shape[0], 4):
                chunk = pixels[start:start + 4].movedim(-1, 1).to(vae.device, vae.dtype) * 2.0 - 1.0
                latents.append((vae.vae.encode(chunk).latent_dist.mode() * vae.scaling_factor).float().cpu())
        return ({"samples": torch.cat(latents)},)


class ImageScale:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE",), "upscale_method": (IMAGE_METHODS,),
            "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1}),
            "crop": (CROP,),
        }}

    def upscale(self, image, upscale_method: str, width: int, height: int, crop: str):
        if width == 0 and height == 0:
            return (image,)
        if width == 0:
            width = max(1, round(image.shape[2] * height / image.shape[1]))
        elif height == 0:
            height = max(1, round(image.shape[1] * width / image.shape[2]))
        return (upscale(image.movedim(-1, 1), width, height, upscale_method, crop).movedim(1, -1),)


class ImageScaleBy:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "upscale_method": (IMAGE_METHODS,),
                             "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, image, upscale_method: str, scale_by: float):
        width, height = round(image.shape[2] * scale_by), round(image.shape[1] * scale_by)
        _size_check(width, height, "ImageScaleBy")
        return (upscale(image.movedim(-1, 1), width, height, upscale_method, "disabled").movedim(1, -1),)


class ImageInvert:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image):
        return (1.0 - image,)


class RebatchImages:
    """ComfyUI's RebatchImages: the images of every incoming batch, regrouped into batches of batch_size."""

    DESCRIPTION = "Regroups a list of image batches into batches of the given size (the last may be smaller)."
    RETURN_TYPES = ("IMAGE",)
    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "rebatch"
    CATEGORY = "image/batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE",), "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def rebatch(self, images: list, batch_size: list[int]):
        torch = torch_or_error()
        size = batch_size[0]
        if size < 1:
            raise ValueError(f"RebatchImages: batch_size must be at least 1 (got {size})")
        singles = [one for batch in images for one in batch.split(1)]  # [1, H, W, C] views, in order
        batches = []
        for start in range(0, len(singles), size):
            group = singles[start:start + size]
            shapes = {tuple(one.shape[1:]) for one in group}
            if len(shapes) > 1:
                raise ValueError(f"RebatchImages: images of different sizes cannot share a batch: "
                                 f"{', '.join('x'.join(map(str, s)) for s in sorted(shapes))}")
            batches.append(torch.cat(group, dim=0))
        return (batches,)


# Bounds on one LoadImage input, checked from the file's header before any frame is decoded: a 160 KB GIF
# can hold 60 frames of 1024x1024, and every pixel costs 16 bytes as float32 RGB plus mask (about 1 GB there).
# The defaults admit a 4096x4096 still and a 60-frame 512x512 animation (at most 512 MiB of tensors).
MAX_INPUT_FRAMES = 1024
MAX_INPUT_PIXELS = 32 * 1024 * 1024  # all frames together


class ImageInputTooLarge(TooLarge):
    """An input image over MAX_INPUT_FRAMES or MAX_INPUT_PIXELS (or Pillow's decompression-bomb bound)."""

    kind = "image_too_large"


def _input_limits() -> tuple[int, int, str]:
    """(max frames, max pixels, how to raise them): the [engine] settings where set, else this module's defaults."""
    from runtime.settings import current

    engine = current().engine
    frames = engine.max_input_frames if engine.max_input_frames is not None else MAX_INPUT_FRAMES
    pixels = engine.max_input_pixels if engine.max_input_pixels is not None else MAX_INPUT_PIXELS
    return frames, pixels, ("raise max_input_frames / max_input_pixels under [engine] in the config file "
                            "(or NODEWEAVER_ENGINE__MAX_INPUT_FRAMES / NODEWEAVER_ENGINE__MAX_INPUT_PIXELS)")


def _open_image(path, name: str):
    """Open (read the header of) an input image; unreadable files and decompression bombs are clear errors."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageInputTooLarge(f"input image {name!r} is too large for Pillow's decompression-bomb check "
                                 f"({exc}); scale it down before loading it") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BadRequest(f"input image {name!r} cannot be read as an image: {exc}") from exc


def _frame_count(opened, name: str) -> int:
    """How many frames LoadImage decodes, from the header (counting GIF frames skips their pixel data)."""
    if opened.format == "MPO":  # ComfyUI keeps only the first of an MPO's frames
        return 1
    try:
        return max(1, int(getattr(opened, "n_frames", 1)))
    except (OSError, EOFError, ValueError) as exc:
        raise BadRequest(f"input image {name!r} is damaged: cannot count its frames ({exc})") from exc


def _check_input_size(name: str, frames: int, width: int, height: int) -> None:
    """Refuse, before decoding, an input whose frames would not fit the configured bounds."""
    max_frames, max_pixels, how = _input_limits()
    total = frames * width * height
    details = {"frames": frames, "width": width, "height": height, "pixels": total,
               "max_frames": max_frames, "max_pixels": max_pixels}
    if frames > max_frames:
        raise ImageInputTooLarge(f"input image {name!r} has {frames} frames, over the limit of {max_frames} "
                                 f"frames per image input; trim the animation or {how}", details=details)
    if total > max_pixels:
        raise ImageInputTooLarge(
            f"input image {name!r} is {frames} frame(s) of {width}x{height} = {total:,} pixels, over the limit "
            f"of {max_pixels:,} pixels per image input (about {max_pixels * 16 // 2 ** 20} MiB as tensors); "
            f"scale it down, use fewer frames, or {how}", details=details)


def _alpha_of(frame):
    """The frame's alpha channel as a Pillow image, or None: RGBA/LA bands, or a palette's transparency."""
    if "A" in frame.getbands():
        return frame.getchannel("A")
    if frame.mode == "P" and "transparency" in frame.info:
        return frame.convert("RGBA").getchannel("A")
    return None


def _oriented(opened):
    """The current frame with its EXIF orientation applied; copied only when there is one to apply."""
    from PIL import ImageOps

    if opened.getexif().get(0x0112, 1) in (None, 1):  # 0x0112: Orientation, 1 = as stored
        return opened
    return ImageOps.exif_transpose(opened)


def _decode_frames(opened, count: int):
    """Decode up to `count` frames one at a time into preallocated float32 tensors (no per-frame copies kept).

    As ComfyUI: frames of the first frame's size form the batch (others are skipped), EXIF orientation is
    applied, the mask is 1 - alpha, and an image without alpha gets a 64x64 zero mask per frame.
    """
    torch = torch_or_error()
    import numpy as np

    scale = np.float32(255.0)
    images = masks = None
    kept = 0
    for index in range(count):
        opened.seek(index)
        frame = _oriented(opened)
        if frame.mode == "I":  # 32-bit integer images, scaled as ComfyUI does
            frame = frame.point(lambda value: value * (1 / 255))
        rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
        if images is None:
            width, height = rgb.size
            images = torch.empty((count, height, width, 3), dtype=torch.float32)
        elif rgb.size != (width, height):
            continue
        np.divide(np.asarray(rgb), scale, out=images.numpy()[kept])  # uint8 -> float32 in place
        alpha = _alpha_of(frame)
        if alpha is not None:
            if masks is None:
                masks = torch.zeros((count, height, width), dtype=torch.float32)
            plane = masks.numpy()[kept]
            np.divide(np.asarray(alpha), scale, out=plane)
            np.subtract(np.float32(1.0), plane, out=plane)
        kept += 1
    if kept < count:
        images = images[:kept].clone()
        masks = masks[:kept].clone() if masks is not None else None
    return images, masks if masks is not None else torch.zeros((kept, 64, 64), dtype=torch.float32)


class LoadImage:
    DESCRIPTION = "Loads an image (and its alpha channel as a MASK) from the input folder."
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": (folders.input_files(folders.IMAGE_EXTENSIONS), {"image_upload": True})}}

    @classmethod
    def IS_CHANGED(cls, image: str) -> str:
        try:
            return hashlib.sha256(folders.input_path(image).read_bytes()).hexdigest()
        except (OSError, folders.UnsafePathError):
            return "missing"

    @classmethod
    def VALIDATE_INPUTS(cls, image: Any = None) -> bool | str:
        """The file exists and its header is within the size bounds, so an oversized input fails at
        validation (the bounds are checked again when it loads: the file may change in between)."""
        found = folders.check_input_file(image, folders.IMAGE_EXTENSIONS, "image")
        if found is not True or image is None:
            return found
        try:
            with _open_image(folders.input_path(str(image)), str(image)) as opened:
                _check_input_size(str(image), _frame_count(opened, str(image)), *opened.size)
        except NodeWeaverError as exc:
            return str(exc)
        return True

    def load_image(self, image: str):
        with _open_image(folders.input_path(image), image) as opened:
            count = _frame_count(opened, image)
            _check_input_size(image, count, *opened.size)
            try:
                return _decode_frames(opened, count)
            except (OSError, EOFError, SyntaxError) as exc:  # Pillow's errors for truncated or corrupt data
                raise BadRequest(f"input image {image!r} cannot be decoded (damaged or truncated): {exc}") from exc


def _save_png(images, prefix: str, prompt: Any, extra_pnginfo: Any, temp: bool) -> list[dict]:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    results = []
    for image in images:
        picture = Image.fromarray(to_uint8(image))
        metadata = PngInfo()
        if prompt is not None:
            metadata.add_text("prompt", json.dumps(prompt))
        if isinstance(extra_pnginfo, dict):
            for key, value in extra_pnginfo.items():
                metadata.add_text(key, json.dumps(value))
        path, subfolder, filename = (folders.next_temp_file(prefix, "png") if temp
                                     else folders.next_output_file(prefix, "png"))
        picture.save(path, pnginfo=metadata, compress_level=1 if temp else 4)
        results.append({"filename": filename, "subfolder": subfolder, "type": "temp" if temp else "output"})
    return results


class SaveImage:
    DESCRIPTION = "Saves the input images to your output folder, with the workflow in the PNG metadata."
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The images to save."}),
            "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": "The prefix for the file to save."}),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: Any = None) -> bool | str:
        return folders.check_output_prefix(filename_prefix)

    def save_images(self, images, filename_prefix: str = "ComfyUI", prompt=None, extra_pnginfo=None):
        return {"ui": {"images": _save_png(images, filename_prefix, prompt, extra_pnginfo, temp=False)}}


class PreviewImage:
    DESCRIPTION = "Shows images without keeping them (saved to the temp folder)."
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def save_images(self, images, prompt=None, extra_pnginfo=None):
        prefix = "ComfyUI_temp_" + uuid.uuid4().hex[:5]
        return {"ui": {"images": _save_png(images, prefix, prompt, extra_pnginfo, temp=True)}}


NODE_CLASS_MAPPINGS = {
    "EmptyLatentImage": EmptyLatentImage, "LatentUpscale": LatentUpscale, "LatentUpscaleBy": LatentUpscaleBy,
    "VAEDecode": VAEDecode, "VAEEncode": VAEEncode, "ImageScale": ImageScale, "ImageScaleBy": ImageScaleBy,
    "ImageInvert": ImageInvert, "LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage,
    "RebatchImages": RebatchImages,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyLatentImage": "Empty Latent Image", "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By", "VAEDecode": "VAE Decode", "VAEEncode": "VAE Encode",
    "ImageScale": "Upscale Image", "ImageScaleBy": "Upscale Image By", "ImageInvert": "Invert Image",
    "LoadImage": "Load Image", "SaveImage": "Save Image", "PreviewImage": "Preview Image",
    "RebatchImages": "Rebatch Images",
}
