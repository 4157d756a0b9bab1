"""File choices of imported catalog nodes, as this installation's folders would fill them.

An imported `/object_info` lists the model and input files of the machine it came from (none at all for a
ComfyUI started without models, like the shared fixture). ComfyUI fills those lists from its folders each
time `/object_info` is read; for catalog nodes we do the same from NodeWeaver's folders, so a workflow that
names an installed model validates against the catalog. The catalog's own names are kept: they are the files
of the machine it describes.
"""

from __future__ import annotations

from typing import Any

from runtime import folders

IMAGE_FILES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tiff", ".tif"})
VIDEO_FILES = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v"})
AUDIO_FILES = frozenset({".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus"})
INPUT_KINDS = {"input:image": IMAGE_FILES, "input:video": VIDEO_FILES, "input:audio": AUDIO_FILES}

# (node class, input) → the folder kind ComfyUI 0.3.64 lists for it (nodes.py, comfy_extras/*)
FILE_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "config_name"): "configs",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("ModelPatchLoader", "name"): "model_patches",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    ("LoadImage", "image"): "input:image",
    ("LoadImageMask", "image"): "input:image",
    ("LoadVideo", "file"): "input:video",
    ("LoadAudio", "audio"): "input:audio",
}
_BY_CLASS: dict[str, dict[str, str]] = {}
for (_cls, _input), _kind in FILE_INPUTS.items():
    _BY_CLASS.setdefault(_cls, {})[_input] = _kind


def local_files(kind: str) -> list[str]:
    """The names this installation has of one kind: a model folder, or input files of one medium."""
    if kind in INPUT_KINDS:
        return folders.input_files(INPUT_KINDS[kind])
    return folders.model_files(kind)


def _merged(spec: Any, names: list[str]) -> Any:
    """The input spec with `names` added to its choices, in either /object_info form (old list, or COMBO)."""
    if not isinstance(spec, list) or not spec or not names:
        return spec
    if isinstance(spec[0], list):
        return [sorted(set(spec[0]) | set(names), key=str), *spec[1:]]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options") or []
        return [spec[0], {**spec[1], "options": sorted(set(options) | set(names), key=str)}, *spec[2:]]
    return spec


def with_local_files(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry whose file inputs also list this installation's files (a copy; the entry is kept)."""
    wanted = _BY_CLASS.get(name)
    if not wanted:
        return entry
    inputs = entry.get("input")
    if not isinstance(inputs, dict):
        return entry
    sections = {}
    for section, specs in inputs.items():
        if not isinstance(specs, dict) or not wanted.keys() & specs.keys():
            sections[section] = specs
            continue
        sections[section] = {key: _merged(spec, local_files(wanted[key])) if key in wanted else spec
                             for key, spec in specs.items()}
    return {**entry, "input": sections}
