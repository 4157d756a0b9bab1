"""ComfyUI's `comfy_api.latest.ui`: what a V3 node returns as `NodeOutput(ui=...)`, as far as packs use it.

Values are lists (not ComfyUI's one-element tuples) because the engine gathers ui items into lists.
"""

from __future__ import annotations

from typing import Any

from nodes.comfy_compat.comfy_api.latest._io import FolderType
from runtime import folders


class _UIOutput:
    """Base of ui values: `as_dict()` is what lands in the job's outputs."""

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class SavedResult(dict):
    """One saved file as ComfyUI's ui lists it: filename, subfolder, type."""

    def __init__(self, filename: str, subfolder: str, type: FolderType) -> None:  # noqa: A002 - ComfyUI's name
        super().__init__(filename=filename, subfolder=subfolder, type=FolderType(type).value)

    @property
    def filename(self) -> str:
        return self["filename"]

    @property
    def subfolder(self) -> str:
        return self["subfolder"]


class SavedImages(_UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False) -> None:
        self.results, self.is_animated = results, is_animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": list(self.results), **({"animated": [True]} if self.is_animated else {})}


class PreviewImage(_UIOutput):
    """Preview images (a [B, H, W, C] tensor in 0..1) written as PNGs to the temp folder."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **kwargs: Any) -> None:
        self.results = _save_previews(image)
        self.animated = animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": self.results, **({"animated": [True]} if self.animated else {})}


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs: Any) -> None:
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        return {"text": [self.value]}


def _save_previews(image: Any) -> list[SavedResult]:
    import numpy as np
    from PIL import Image

    pixels = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels[None]
    results = []
    for frame in pixels:
        path, subfolder, filename = folders.next_temp_file("NodeWeaver_preview", "png")
        Image.fromarray(np.clip(frame * 255.0, 0, 255).astype(np.uint8).squeeze()).save(path)
        results.append(SavedResult(filename, subfolder, FolderType.temp))
    return results


__all__ = ["SavedResult", "SavedImages", "PreviewImage", "PreviewText"]
