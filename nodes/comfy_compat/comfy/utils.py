"""ComfyUI's `comfy.utils`, the parts packs use: ProgressBar, common_upscale and load_torch_file.

torch is imported inside the functions that need it, so loading a pack that only wants ProgressBar stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime import progress

UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos", "bislerp")


class ProgressBar(progress.ProgressBar):
    """comfy.utils.ProgressBar(total, node_id=None): progress events for the running node, or for `node_id`
    (a node reporting on behalf of a node it expanded into)."""

    def __init__(self, total: float, node_id: str | None = None) -> None:
        super().__init__(total)  # type: ignore[arg-type]  # ComfyUI accepts float totals too
        self.node_id = None if node_id is None else str(node_id)

    def update_absolute(self, value: float, total: float | None = None, preview: object = None) -> None:
        if total is not None:
            self.total = total
        self.current = min(value, self.total) if self.total else value
        ctx = progress.current_node.get()
        if ctx is None:
            return
        ctx.report(self.current, self.total, ctx.prompt_id, self.node_id or ctx.node_id)


def common_upscale(samples: Any, width: int, height: int, upscale_method: str, crop: str) -> Any:
    """Resize a [B, C, H, W] tensor to width x height; crop="center" first cuts it to the target aspect."""
    import torch.nn.functional as functional

    if upscale_method not in UPSCALE_METHODS:
        raise ValueError(f"unknown upscale method {upscale_method!r}; expected one of {', '.join(UPSCALE_METHODS)}")
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if crop == "center":
        samples = _center_crop(samples, width / height)
    squeeze = samples.ndim == 3
    if squeeze:
        samples = samples.unsqueeze(0)
    # torch has no lanczos or bislerp: bicubic with antialiasing is the closest built-in filter.
    mode = {"nearest-exact": "nearest-exact", "bilinear": "bilinear", "area": "area"}.get(upscale_method, "bicubic")
    kwargs: dict[str, Any] = {}
    if mode in ("bilinear", "bicubic"):
        kwargs = {"align_corners": False, "antialias": True}
    out = functional.interpolate(samples.float(), size=(height, width), mode=mode, **kwargs).to(samples.dtype)
    return out.squeeze(0) if squeeze else out


def _center_crop(samples: Any, target_aspect: float) -> Any:
    old_height, old_width = samples.shape[-2], samples.shape[-1]
    old_aspect = old_width / old_height
    if old_aspect > target_aspect:
        keep = round(old_height * target_aspect)
        left = (old_width - keep) // 2
        return samples[..., :, left:left + keep]
    if old_aspect < target_aspect:
        keep = round(old_width / target_aspect)
        top = (old_height - keep) // 2
        return samples[..., top:top + keep, :]
    return samples


def load_torch_file(ckpt: str | Path, safe_load: bool = False, device: Any = None,
                    return_metadata: bool = False) -> Any:
    """A state dict from .safetensors/.sft (safetensors) or a torch pickle (weights only, never arbitrary code)."""
    import torch

    path = Path(ckpt)
    device = torch.device("cpu") if device is None else device
    metadata = None
    if path.suffix.lower() in (".safetensors", ".sft"):
        from safetensors import safe_open

        tensors = {}
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                tensors[key] = handle.get_tensor(key)
            metadata = handle.metadata() if return_metadata else None
        state = tensors
    else:
        loaded = torch.load(str(path), map_location=device, weights_only=True)
        state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded
    return (state, metadata) if return_metadata else state


__all__ = ["ProgressBar", "UPSCALE_METHODS", "common_upscale", "load_torch_file"]
