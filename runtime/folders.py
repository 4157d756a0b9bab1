"""Model, input and output folders as nodes see them (ComfyUI's `folder_paths`, NodeWeaver-style).

Choice lists of model and input files are read from disk when asked for, so validation always sees what
is installed now. Every path that comes from a workflow goes through `safe_join`, which refuses names that
would escape their folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runtime.errors import NodeWeaverError
from runtime.settings import current

MODEL_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# ComfyUI's model folder names; some have a legacy alias that is searched too.
MODEL_KINDS: dict[str, tuple[str, ...]] = {
    "checkpoints": ("checkpoints",),
    "loras": ("loras",),
    "vae": ("vae",),
    "text_encoders": ("text_encoders", "clip"),
    "diffusion_models": ("diffusion_models", "unet"),
    "clip_vision": ("clip_vision",),
    "controlnet": ("controlnet", "t2i_adapter"),
    "upscale_models": ("upscale_models",),
    "embeddings": ("embeddings",),
    "style_models": ("style_models",),
    "hypernetworks": ("hypernetworks",),
    "configs": ("configs",),
    "diffusers": ("diffusers",),
    "vae_approx": ("vae_approx",),
    "gligen": ("gligen",),
    "photomaker": ("photomaker",),
    "classifiers": ("classifiers",),
    "model_patches": ("model_patches",),
    "audio_encoders": ("audio_encoders",),
}
# ComfyUI's legacy folder names (folder_paths.map_legacy): asking for one means the kind it became
LEGACY_KINDS: dict[str, str] = {"unet": "diffusion_models", "clip": "text_encoders"}


def canonical_kind(kind: str) -> str:
    return LEGACY_KINDS.get(kind, kind)


def model_kinds() -> list[str]:
    """Every model kind known here: ComfyUI's folder names plus those extra_model_paths configured."""
    settings = current()
    return sorted(set(MODEL_KINDS) | set(settings.extra_model_paths) | set(settings.default_model_paths))


class UnsafePathError(NodeWeaverError, ValueError):
    """A name from a workflow would leave the folder it must stay in."""

    kind = "forbidden_path"
    status = 403


def models_dir() -> Path:
    return current().models_dir


def input_dir() -> Path:
    return current().input_dir


def output_dir() -> Path:
    return current().output_dir


def safe_join(root: Path, name: str) -> Path:
    """`root / name`, refusing absolute names, `..` and anything else resolving outside `root`."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafePathError("a file name is required")
    if "\x00" in name:
        raise UnsafePathError(f"file name {name!r} contains a NUL byte")
    candidate = Path(name)
    if candidate.is_absolute() or candidate.drive:
        raise UnsafePathError(f"file name {name!r} must be relative to {root}")
    resolved_root = root.resolve()
    resolved = (resolved_root / candidate).resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafePathError(f"file name {name!r} escapes its folder {root}")
    return resolved


def _folders_for(kind: str) -> list[Path]:
    """The folders holding models of one kind, in ComfyUI's search order: extra_model_paths' default
    folders, ours, an existing ComfyUI installation's, then the other extra_model_paths folders."""
    settings = current()
    kind = canonical_kind(kind)
    roots = [settings.models_dir]
    if settings.comfyui_dir is not None:
        roots.append(settings.comfyui_dir / "models")
    found = [*settings.default_model_paths.get(kind, ()),
             *(root / sub for root in roots for sub in MODEL_KINDS.get(kind, (kind,))),
             *settings.extra_model_paths.get(kind, ())]
    return list(dict.fromkeys(found))


def model_folders(kind: str) -> list[Path]:
    """The folders searched for models of one kind, first first (ComfyUI's folder_paths.get_folder_paths)."""
    return _folders_for(kind)


def model_files(kind: str) -> list[str]:
    """File names (relative, '/'-separated) of models of one kind; diffusers folders count for checkpoints."""
    names: set[str] = set()
    for folder in _folders_for(kind):
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            base = Path(dirpath)
            if base != folder and ((base / "model_index.json").is_file() or _diffusers_model_folder(base)):
                names.add(base.relative_to(folder).as_posix())
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for filename in filenames:
                if Path(filename).suffix.lower() in MODEL_EXTENSIONS:
                    names.add((base / filename).relative_to(folder).as_posix())
    return sorted(names)


def _diffusers_model_folder(path: Path) -> bool:
    """A diffusers model saved on its own (a ControlNet, a UNet: `config.json` naming its class beside the
    weights), chosen by its folder's name as a pipeline folder is."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        import json

        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("_class_name"), str) and \
        any(f.name.startswith("diffusion_pytorch_model") for f in path.iterdir())


def model_path(kind: str, name: str) -> Path | None:
    """The full path of a model file or diffusers folder, or None when it is not installed."""
    for folder in _folders_for(kind):
        try:
            path = safe_join(folder, name)
        except UnsafePathError:
            return None
        if path.exists():
            return path
    return None


def input_files(extensions: frozenset[str] | None = None) -> list[str]:
    """Files in the input folder (top level and subfolders), optionally filtered by extension."""
    root = input_dir()
    if not root.is_dir():
        return []
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith("."):
                continue
            if extensions is None or Path(filename).suffix.lower() in extensions:
                names.append((Path(dirpath) / filename).relative_to(root).as_posix())
    return sorted(names)


def input_path(name: str) -> Path:
    return safe_join(input_dir(), name)


def check_input_file(name: Any, extensions: frozenset[str], label: str) -> bool | str:
    """VALIDATE_INPUTS for nodes reading a file of the input folder: True, or what is wrong and what is there."""
    if name is None:  # linked: known only at run time
        return True
    try:
        if input_path(str(name)).is_file():
            return True
    except UnsafePathError as exc:
        return str(exc)
    available = input_files(extensions)
    hint = f"; {label} files there: {', '.join(available[:10])}" if available else ""
    return f"{label} file {str(name)!r} not found in the input folder {input_dir()}{hint}"


def check_output_prefix(filename_prefix: Any) -> bool | str:
    """VALIDATE_INPUTS for nodes saving under a filename prefix: it may not leave the output folder."""
    if filename_prefix is None:
        return True
    try:
        safe_join(output_dir(), str(filename_prefix) + "_")
    except UnsafePathError as exc:
        return str(exc)
    return True


def next_output_file(filename_prefix: str, extension: str) -> tuple[Path, str, str]:
    """A fresh file in the output folder named as ComfyUI names them: `{prefix}_{counter:05}_.{ext}`.

    Returns (path, subfolder, filename). The prefix may hold subfolders; it may not leave the folder.
    """
    return _next_file(output_dir(), filename_prefix, extension)


def _next_file(root: Path, filename_prefix: str, extension: str) -> tuple[Path, str, str]:
    root.mkdir(parents=True, exist_ok=True)
    stem_path = safe_join(root, (filename_prefix or "NodeWeaver") + "_")
    folder = stem_path.parent
    base = Path(filename_prefix).name or "NodeWeaver"
    folder.mkdir(parents=True, exist_ok=True)
    counter = 1
    for existing in folder.glob(f"{base}_*_.*"):
        middle = existing.name[len(base) + 1:].split("_")[0]
        if middle.isdigit():
            counter = max(counter, int(middle) + 1)
    while True:
        filename = f"{base}_{counter:05}_.{extension}"
        path = folder / filename
        try:
            with open(path, "x"):
                pass
            break
        except FileExistsError:
            counter += 1
    subfolder = folder.relative_to(root.resolve()).as_posix()
    return path, ("" if subfolder == "." else subfolder), filename


def temp_dir() -> Path:
    """Previews go here (ComfyUI's temp folder; --temp-directory, [folders] temp_dir)."""
    return current().temp_dir


def next_temp_file(filename_prefix: str, extension: str) -> tuple[Path, str, str]:
    return _next_file(temp_dir(), filename_prefix, extension)
