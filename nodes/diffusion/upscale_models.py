"""Upscale-model nodes (ComfyUI names): UpscaleModelLoader and ImageUpscaleWithModel.

Models load with `spandrel`, which detects the architecture (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...) from
the weights alone, so UPSCALE_MODEL is spandrel's ImageModelDescriptor exactly as in ComfyUI (custom nodes that
take one keep working). Images are upscaled in overlapping tiles blended with a linear feather, as ComfyUI's
`tiled_scale` does (tile 512, overlap 32, the tile halved on out-of-memory down to 128), so a 4x upscale of a
large picture needs memory for the output, not for the model's activations over the whole picture.

spandrel is imported only when a node runs. It imports torchvision at import time, though only its LaMa
(inpainting) and RestoreFormer (face) architectures use it; where torchvision is absent, or is a build that
cannot load beside the installed torch (PyPI's CUDA torchvision beside a CPU torch), spandrel is imported over
a small stand-in that provides exactly the names those two modules import.
"""

from __future__ import annotations

import enum
import logging
import sys
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from runtime import folders
from runtime.errors import BadRequest, NodeWeaverError

log = logging.getLogger(__name__)

TILE = 512
OVERLAP = 32
MIN_TILE = 128
INSTALL_HINT = "pip install --no-deps 'spandrel>=0.4,<0.5' einops"


class UpscaleModelError(NodeWeaverError):
    """An upscale model file is missing, unreadable, or not a single-image model spandrel knows."""

    kind = "upscale_model_error"
    status = 400


class MissingDependency(NodeWeaverError):
    """A package an upscale node needs is not installed."""

    kind = "missing_dependency"
    status = 501


# ---- importing spandrel -------------------------------------------------------------------------------------
class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _normalize(tensor: Any, mean: Any, std: Any, inplace: bool = False) -> Any:
    """torchvision's `normalize` for a [..., C, H, W] tensor: (x - mean) / std per channel."""
    import torch

    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    if not inplace:
        tensor = tensor.clone()
    return tensor.sub_(mean_t).div_(std_t)


def _rotate(*_args: Any, **_kwargs: Any) -> Any:
    raise MissingDependency("this model's architecture (LaMa) rotates images with torchvision, which is not "
                            "importable here: install the torchvision build that matches your torch")


def _stand_in_torchvision() -> dict[str, types.ModuleType]:
    """Modules named like torchvision's, holding only what spandrel's modules import from it."""
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.normalize = _normalize  # type: ignore[attr-defined]
    functional.rotate = _rotate  # type: ignore[attr-defined]
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    return {m.__name__: m for m in (root, transforms, functional)}


def _torchvision_problem() -> str | None:
    """None when torchvision imports; else why not (absent, or a build that does not fit this torch)."""
    try:
        import torchvision  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "torchvision":
            return f"torchvision needs {exc.name}"
        return "torchvision is not installed"
    except (ImportError, RuntimeError, OSError) as exc:
        return f"torchvision is installed but cannot load beside this torch ({exc})"
    return None


def import_spandrel() -> Any:
    """The spandrel module, or a MissingDependency that says what to install."""
    if "spandrel" in sys.modules:
        return sys.modules["spandrel"]
    from importlib.util import find_spec

    if find_spec("spandrel") is None:
        raise MissingDependency(f"upscale models need the spandrel package: {INSTALL_HINT}")
    problem = _torchvision_problem()
    stand_in: dict[str, types.ModuleType] = {}
    if problem is not None:
        log.info("%s; importing spandrel without it (its LaMa architecture will not run)", problem)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # a half-imported torchvision left behind by the failed import
        stand_in = _stand_in_torchvision()
        sys.modules.update(stand_in)
    try:
        import spandrel
    except ModuleNotFoundError as exc:
        raise MissingDependency(f"spandrel needs {exc.name}, which is not installed: {INSTALL_HINT}") from exc
    finally:
        for name in stand_in:  # other libraries must not mistake the stand-in for torchvision
            sys.modules.pop(name, None)
    return spandrel


# ---- loading ------------------------------------------------------------------------------------------------
def read_upscale_state_dict(path: Path) -> dict[str, Any]:
    spandrel = import_spandrel()
    try:
        state = spandrel.ModelLoader().load_state_dict_from_file(str(path))
    except Exception as exc:  # torch/safetensors/pickle errors all mean the same thing to the user
        raise UpscaleModelError(f"cannot read upscale model {path.name}: {exc}") from exc
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in state:  # SwinIR saved from DataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_upscale_model(path: Path) -> Any:
    """spandrel's ImageModelDescriptor for a file, in eval mode on the CPU, loaded once per process."""
    from runtime.models import model_cache

    def load() -> Any:
        spandrel = import_spandrel()
        state = read_upscale_state_dict(path)
        try:
            descriptor = spandrel.ModelLoader().load_from_state_dict(state).eval()
        except spandrel.UnsupportedModelError as exc:
            raise UpscaleModelError(f"{path.name} is not an upscale model architecture spandrel recognises "
                                    f"(spandrel {spandrel.__version__})") from exc
        except (RuntimeError, KeyError, ValueError, IndexError) as exc:
            raise UpscaleModelError(f"{path.name}: the weights do not fit the architecture spandrel detected: "
                                    f"{exc}") from exc
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise UpscaleModelError(f"{path.name}: Upscale model must be a single-image model "
                                    f"(this is a {descriptor.architecture.name} {descriptor.purpose} model).")
        return descriptor

    return model_cache.load(path, load, kind="upscale_model", device="cpu")


# ---- tiled upscaling ----------------------------------------------------------------------------------------
def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one axis (ComfyUI's positions, the last one pulled back inside the image)."""
    if size <= tile:
        return [0]
    return [max(0, min(size - overlap, p)) for p in range(0, size - overlap, tile - overlap)]


def tile_count(width: int, height: int, tile: int, overlap: int) -> int:
    return len(tile_starts(width, tile, overlap)) * len(tile_starts(height, tile, overlap))


def _feather(height: int, width: int, feather: int, like: Any) -> Any:
    """A [1, 1, H, W] weight ramping linearly up to 1 over `feather` pixels at every edge."""
    import torch

    def ramp(n: int) -> Any:
        r = torch.ones(n, dtype=like.dtype, device=like.device)
        if feather < n:
            steps = torch.arange(1, feather + 1, dtype=like.dtype, device=like.device) / feather
            r[:feather] *= steps
            r[n - feather:] *= steps.flip(0)
        return r

    return (ramp(height)[:, None] * ramp(width)[None, :])[None, None]


def tiled_scale(images: Any, function: Callable[[Any], Any], *, tile: int, overlap: int, scale: float,
                out_channels: int, on_tile: Callable[[], None] | None = None) -> Any:
    """Run `function` (a [1, C, h, w] → [1, out_channels, h*scale, w*scale] model) over overlapping tiles of a
    [B, C, H, W] batch and blend the results; the output stays on the CPU.

    The sum of weights is kept as one channel and the blend is accumulated in the output itself, so memory
    beyond the output is a third of it rather than ComfyUI's two extra full copies.
    """
    import torch

    batch, _channels, height, width = images.shape
    out_h, out_w = round(height * scale), round(width * scale)
    output = torch.zeros((batch, out_channels, out_h, out_w), dtype=torch.float32)
    feather = round(overlap * scale)
    for b in range(batch):
        single = images[b:b + 1]
        if height <= tile and width <= tile:
            output[b:b + 1] = function(single).float().cpu()
            if on_tile:
                on_tile()
            continue
        weight = torch.zeros((1, 1, out_h, out_w), dtype=torch.float32)
        target = output[b:b + 1]
        for y in tile_starts(height, tile, overlap):
            for x in tile_starts(width, tile, overlap):
                h, w = min(tile, height - y), min(tile, width - x)
                piece = function(single[:, :, y:y + h, x:x + w]).float().cpu()
                mask = _feather(piece.shape[2], piece.shape[3], feather, piece)
                oy, ox = round(y * scale), round(x * scale)
                target[:, :, oy:oy + piece.shape[2], ox:ox + piece.shape[3]] += piece * mask
                weight[:, :, oy:oy + piece.shape[2], ox:ox + piece.shape[3]] += mask
                if on_tile:
                    on_tile()
        target /= weight
    return output


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def upscale_image(descriptor: Any, image: Any, tile: int = TILE, overlap: int = OVERLAP) -> Any:
    """ImageUpscaleWithModel's work: IMAGE [B, H, W, C] in [0, 1] → IMAGE upscaled by the model's scale."""
    import torch

    from nodes.diffusion.models import pick_device
    from runtime.models import model_bytes, model_cache
    from runtime.progress import ProgressBar, check_interrupted

    if getattr(image, "dim", lambda: 0)() != 4:
        raise BadRequest(f"ImageUpscaleWithModel: image must be an IMAGE [batch, height, width, channels]; "
                         f"got {list(getattr(image, 'shape', []))}")
    if image.shape[-1] != descriptor.input_channels:
        raise BadRequest(f"ImageUpscaleWithModel: the model takes {descriptor.input_channels}-channel images; "
                         f"this image has {image.shape[-1]} channels")
    device = pick_device()
    if device.startswith("cuda"):  # ComfyUI's estimate: weights + 384 bytes of activations per tile value
        needed = model_bytes(descriptor.model) + int(512 * 512 * 3 * 4 * max(descriptor.scale, 1) * 384)
        model_cache.make_room(needed + image.nelement() * image.element_size())
    descriptor.to(device)
    pixels = image.movedim(-1, -3)

    def run_tile(part: Any) -> Any:
        check_interrupted()
        return descriptor(part.to(device=device, dtype=descriptor.dtype))

    try:
        while True:
            steps = image.shape[0] * tile_count(image.shape[2], image.shape[1], tile, overlap)
            bar = ProgressBar(steps)
            try:
                with torch.inference_mode():
                    out = tiled_scale(pixels, run_tile, tile=tile, overlap=overlap, scale=descriptor.scale,
                                      out_channels=descriptor.output_channels, on_tile=partial(bar.update, 1))
                break
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not is_out_of_memory(exc) or tile // 2 < MIN_TILE:
                    raise
                tile //= 2
                log.info("out of memory upscaling; retrying with %d-pixel tiles", tile)
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
    finally:
        descriptor.to("cpu")
    return torch.clamp(out.movedim(-3, -1), min=0.0, max=1.0)


# ---- nodes --------------------------------------------------------------------------------------------------
class UpscaleModelLoader:
    USES_GPU = True
    RETURN_TYPES = ("UPSCALE_MODEL",)
    FUNCTION = "load_model"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model_name": (folders.model_files("upscale_models"),)}}

    @classmethod
    def IS_CHANGED(cls, model_name: str) -> str:
        path = folders.model_path("upscale_models", model_name)
        if path is None:
            return "missing"
        stat = path.stat()
        return f"{path}:{stat.st_mtime_ns}:{stat.st_size}"

    def load_model(self, model_name: str) -> tuple[Any]:
        path = folders.model_path("upscale_models", model_name)
        if path is None:
            raise UpscaleModelError(f"upscale model {model_name!r} not found in "
                                    f"{folders.models_dir() / 'upscale_models'}")
        return (load_upscale_model(path),)


class ImageUpscaleWithModel:
    USES_GPU = True
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    CATEGORY = "image/upscaling"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"upscale_model": ("UPSCALE_MODEL",), "image": ("IMAGE",)}}

    def upscale(self, upscale_model: Any, image: Any) -> tuple[Any]:
        return (upscale_image(upscale_model, image),)


NODE_CLASS_MAPPINGS: dict[str, type] = {
    "UpscaleModelLoader": UpscaleModelLoader,
    "ImageUpscaleWithModel": ImageUpscaleWithModel,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "UpscaleModelLoader": "Load Upscale Model",
    "ImageUpscaleWithModel": "Upscale Image (using Model)",
}
