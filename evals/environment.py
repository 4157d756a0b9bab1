"""A suite's `environment`: placeholder model files and small real input files in a scratch folder, with
NodeWeaver's folder settings pointed at them, so names in the requests exist as on a user's machine."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runtime.settings import current, using

KIND_FOLDERS = {"checkpoints": "checkpoints", "loras": "loras", "vae": "vae", "upscale_models": "upscale_models",
                "text_encoders": "text_encoders", "diffusion_models": "diffusion_models", "embeddings": "embeddings"}


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
        path = inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        if suffix in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
            from PIL import Image

            Image.new("RGB", (96, 64), (180, 120, 60)).save(path)
        else:
            path.write_text("NodeWeaver keeps workflows valid.\nIt plans, validates, repairs and runs them.\n"
                            "This is a small text file for evaluation.\n", encoding="utf-8")
    return {"models": models, "input": inputs, "output": outputs}


@contextmanager
def environment(spec: dict[str, Any], root: Path, *, runnable: bool = False):
    """Build the environment and point NodeWeaver's settings at it for the duration."""
    folders = build_environment(spec, root, runnable=runnable)
    scratch = current().model_copy(update={"models_dir": folders["models"], "input_dir": folders["input"],
                                           "output_dir": folders["output"]})
    with using(scratch):
        yield folders
