"""A suite's `environment`: placeholder model files and small real input files in a scratch folder, with
NodeWeaver's folder settings pointed at them, so names in the requests exist as on a user's machine."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runtime.settings import current, using

# Every model folder a ComfyUI user has; `clip` and `unet` are the legacy names of text_encoders and
# diffusion_models, which ComfyUI (and runtime.folders) still search.
KIND_FOLDERS = {kind: kind for kind in (
    "checkpoints", "loras", "vae", "upscale_models", "controlnet", "clip_vision", "style_models", "text_encoders",
    "diffusion_models", "clip", "unet", "embeddings", "hypernetworks", "t2i_adapter")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif")


def _runnable_models(root: Path) -> dict[str, Path] | None:
    """The tiny demo checkpoint and LoRA (random weights), written once, to stand in for named models."""
    try:
        import torch  # noqa: F401

        from nodes.diffusion.tiny import TINY_NAME, write_tiny_checkpoint, write_tiny_lora
    except ImportError:
        return None
    cache = root / "_tiny"
    checkpoint = cache / "checkpoints" / f"{TINY_NAME}.safetensors"
    if not checkpoint.is_file():
        write_tiny_checkpoint(cache, diffusers_folder=False)
        write_tiny_lora(cache)
    return {"checkpoint": checkpoint, "tokenizer": cache / "checkpoints" / f"{TINY_NAME}.tokenizer",
            "lora": cache / "loras" / "tiny-lora.safetensors"}


def build_environment(spec: dict[str, Any], root: Path, *, runnable: bool = False) -> dict[str, Path]:
    """Placeholder model files (or, with `runnable`, the tiny demo model under each name) and input files."""
    import shutil

    models, inputs, outputs = root / "models", root / "input", root / "output"
    for folder in (models, inputs, outputs):
        folder.mkdir(parents=True, exist_ok=True)
    tiny = _runnable_models(root) if runnable else None
    for kind, folder in KIND_FOLDERS.items():
        for name in spec.get(kind, []) or []:
            path = models / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if tiny and kind == "checkpoints":
                shutil.copyfile(tiny["checkpoint"], path)
                shutil.copytree(tiny["tokenizer"], path.with_name(path.stem + ".tokenizer"), dirs_exist_ok=True)
            elif tiny and kind == "loras":
                shutil.copyfile(tiny["lora"], path)
            else:
                path.write_bytes(b"placeholder: not a real model")
    for name in spec.get("input", []) or []:
        _write_input(inputs / name)
    return {"models": models, "input": inputs, "output": outputs}


def _write_input(path: Path) -> None:
    """A small real image (a mask: white area on black, with a matching alpha), a few bytes of video, or text."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image, ImageDraw

        if "mask" in path.stem.lower():
            mask = Image.new("L", (96, 64), 0)
            ImageDraw.Draw(mask).rectangle((24, 16, 71, 47), fill=255)
            if suffix == ".png":
                Image.merge("RGBA", (mask, mask, mask, mask)).save(path)
            else:
                mask.save(path)
        else:
            Image.new("RGB", (96, 64), (180, 120, 60)).save(path)
    elif suffix in VIDEO_SUFFIXES:
        path.write_bytes(b"\x00\x00\x00\x18ftypisom placeholder video: not decodable")
    else:
        path.write_text("NodeWeaver keeps workflows valid.\nIt plans, validates, repairs and runs them.\n"
                        "This is a small text file for evaluation.\n", encoding="utf-8")


@contextmanager
def environment(spec: dict[str, Any], root: Path, *, runnable: bool = False):
    """Build the environment and point NodeWeaver's settings at it for the duration."""
    folders = build_environment(spec, root, runnable=runnable)
    scratch = current().model_copy(update={"models_dir": folders["models"], "input_dir": folders["input"],
                                           "output_dir": folders["output"]})
    with using(scratch):
        yield folders
