"""Model binding for the offline planner's chain builder: which installed file each loader gets.

A file is chosen by kind (the models folder it lives in) and by architecture, read from its name (sdxl, sd15,
flux, wan 2.1/2.2 t2v vs i2v, ltx, svd, umt5, clip_l, t5xxl …), preferring the family the request names. The
installed files are those in NodeWeaver's folders plus those the target catalog lists in its loader's choices
(a ComfyUI /object_info names the files installed over there). A needed model that is not installed is
recorded as missing — a question with the installed choices and the file a template would download — and the
draft still gets that file name, so the user sees the whole plan before fetching anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from nodes.registry import NodeRegistry
from runtime import folders

# kind → (loader class, input name): where a target catalog lists the files of that kind
LOADER_INPUTS: dict[str, tuple[str, str]] = {
    "checkpoints": ("CheckpointLoaderSimple", "ckpt_name"),
    "diffusion_models": ("UNETLoader", "unet_name"),
    "text_encoders": ("CLIPLoader", "clip_name"),
    "vae": ("VAELoader", "vae_name"),
    "loras": ("LoraLoader", "lora_name"),
    "upscale_models": ("UpscaleModelLoader", "model_name"),
    "controlnet": ("ControlNetLoader", "control_net_name"),
    "clip_vision": ("CLIPVisionLoader", "clip_name"),
    "style_models": ("StyleModelLoader", "style_model_name"),
}

# architecture → patterns of file names (lower case) that mark it
FAMILY_PATTERNS: dict[str, tuple[str, ...]] = {
    "kontext": ("kontext",),
    "qwen_edit": ("qwen_image_edit", "qwen-image-edit"),
    "qwen": ("qwen",),
    "flux": ("flux",),
    "sd3": ("sd3",),
    "wan": ("wan2", "wan_2", "wan-2"),
    "ltxv": ("ltx",),
    "svd": ("svd",),
    "hunyuan": ("hunyuan",),
    "sdxl": ("sdxl", "sd_xl", "xl"),
    "sd15": ("v1-5", "v1_5", "sd15", "sd1.5", "sd-1.5", "1.5"),
}

# (kind, tag) → a well-known download file name, used when no template names one
DOWNLOADS: dict[tuple[str, str], str] = {
    ("checkpoints", "sd15"): "v1-5-pruned-emaonly-fp16.safetensors",
    ("checkpoints", "sdxl"): "sd_xl_base_1.0.safetensors",
    ("checkpoints", "flux"): "flux1-dev-fp8.safetensors",
    ("checkpoints", "ltxv"): "ltx-video-2b-v0.9.5.safetensors",
    ("checkpoints", "svd"): "svd_xt.safetensors",
    ("upscale_models", "2x"): "RealESRGAN_x2plus.pth",
    ("upscale_models", "4x"): "4x-UltraSharp.pth",
    ("controlnet", "sd15-canny"): "control_v11p_sd15_canny.pth",
    ("controlnet", "sd15-depth"): "control_v11f1p_sd15_depth.pth",
    ("controlnet", "sd15-pose"): "control_v11p_sd15_openpose.pth",
    ("controlnet", "sd15-lineart"): "control_v11p_sd15_lineart.pth",
    ("controlnet", "sd15-scribble"): "control_v11p_sd15_scribble.pth",
    ("controlnet", "sd15-tile"): "control_v11f1e_sd15_tile.pth",
    ("controlnet", "sdxl-canny"): "diffusers_xl_canny_full.safetensors",
    ("controlnet", "sdxl-depth"): "diffusers_xl_depth_full.safetensors",
    ("controlnet", "sdxl-pose"): "thibaud_xl_openpose.safetensors",
    ("diffusion_models", "wan-t2v"): "wan2.1_t2v_1.3B_fp16.safetensors",
    ("diffusion_models", "wan-i2v"): "wan2.1_i2v_480p_14B_fp16.safetensors",
    ("diffusion_models", "wan-flf2v"): "wan2.1_flf2v_720p_14B_fp16.safetensors",
    ("diffusion_models", "wan-vace"): "wan2.1_vace_1.3B_fp16.safetensors",
    ("diffusion_models", "kontext"): "flux1-dev-kontext_fp8_scaled.safetensors",
    ("diffusion_models", "qwen_edit"): "qwen_image_edit_fp8_e4m3fn.safetensors",
    ("text_encoders", "umt5"): "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    ("text_encoders", "t5xxl"): "t5xxl_fp16.safetensors",
    ("text_encoders", "clip_l"): "clip_l.safetensors",
    ("text_encoders", "qwen_vl"): "qwen_2.5_vl_7b_fp8_scaled.safetensors",
    ("vae", "wan"): "wan_2.1_vae.safetensors",
    ("vae", "wan22"): "wan2.2_vae.safetensors",
    ("vae", "flux"): "ae.safetensors",
    ("vae", "qwen"): "qwen_image_vae.safetensors",
    ("clip_vision", "clip_vision_h"): "clip_vision_h.safetensors",
    ("clip_vision", "siglip"): "sigclip_vision_patch14_384.safetensors",
    ("style_models", "redux"): "flux1-redux-dev.safetensors",
}

# the folder a template's ModelFile.directory names, per kind
_TEMPLATE_DIRS = {"checkpoints": ("checkpoints",), "diffusion_models": ("diffusion_models", "unet"),
                  "text_encoders": ("text_encoders", "clip"), "vae": ("vae",), "loras": ("loras",),
                  "upscale_models": ("upscale_models",), "controlnet": ("controlnet",),
                  "clip_vision": ("clip_vision",), "style_models": ("style_models",)}


def family_of(name: str) -> str | None:
    """The architecture a model file's name marks, most specific first; None when the name says nothing."""
    low = name.lower()
    for family, patterns in FAMILY_PATTERNS.items():
        if any(p in low for p in patterns):
            return family
    return None


def installed(kind: str, registry: NodeRegistry | None = None) -> list[str]:
    """Installed files of a kind: the local folders, plus the files the target catalog's loader lists."""
    names = set(folders.model_files(kind))
    loader = LOADER_INPUTS.get(kind)
    if registry is not None and loader and loader[0] in registry:
        spec = registry.node_info(loader[0]).get("input", {}).get("required", {}).get(loader[1])
        names.update(_choices(spec))
    return sorted(names)


def _choices(spec: object) -> list[str]:
    """The string choices of an /object_info input (old list form or COMBO with options)."""
    if not isinstance(spec, list | tuple) or not spec:
        return []
    if isinstance(spec[0], list):
        return [c for c in spec[0] if isinstance(c, str)]
    if len(spec) > 1 and isinstance(spec[1], dict) and isinstance(spec[1].get("options"), list):
        return [c for c in spec[1]["options"] if isinstance(c, str)]
    return []


def scale_of(name: str) -> int | None:
    """An upscale model's factor from its name ("4x-UltraSharp", "RealESRGAN_x2plus"), None when unsaid."""
    match = re.search(r"(?<![a-z0-9])(\d)x(?![a-z])|x(\d)(?!\d)", name.lower())
    if not match:
        return None
    return int(match.group(1) or match.group(2))


@dataclass
class Missing:
    """A needed model that is not installed: the question to ask and the file to download."""

    slot: str
    kind: str
    what: str
    choices: list[str]
    download: str


@dataclass
class Binder:
    """Chooses files for loaders and remembers what is missing; one per build, so a slot is asked once."""

    registry: NodeRegistry
    answers: dict[str, str]
    hint: str | None = None
    missing: list[Missing] = field(default_factory=list)
    _cache: dict[str, list[str]] = field(default_factory=dict)

    def files(self, kind: str) -> list[str]:
        if kind not in self._cache:
            self._cache[kind] = installed(kind, self.registry)
        return self._cache[kind]

    def find(self, kind: str, *, need: Iterable[str] = (), avoid: Iterable[str] = (),
             prefer: Iterable[str] = ()) -> str | None:
        """The best installed file of a kind whose name has every `need` pattern (any of a '|'-joined group),
        none of `avoid`; ranked by the request's family hint, then `prefer` patterns, then name."""
        need, avoid, prefer = list(need), list(avoid), list(prefer)

        def ok(name: str) -> bool:
            low = name.lower()
            return all(any(p in low for p in group.split("|")) for group in need) and \
                not any(p in low for p in avoid)

        found = [n for n in self.files(kind) if ok(n)]
        if not found:
            return None

        def rank(name: str) -> tuple:
            low = name.lower()
            return (self.hint is not None and family_of(name) != self.hint,
                    [p not in low for p in prefer], name)

        return sorted(found, key=rank)[0]

    def bind(self, slot: str, kind: str, what: str, *, tag: str, need: Iterable[str] = (),
             avoid: Iterable[str] = (), prefer: Iterable[str] = (), task: str = "") -> str:
        """An answered, else installed, else suggested file; a suggested one is recorded as missing."""
        answer = self.answers.get(slot)
        if answer:
            return answer
        found = self.find(kind, need=need, avoid=avoid, prefer=prefer)
        if found is not None:
            return found
        for earlier in self.missing:
            if earlier.slot == slot:
                return earlier.download
        download = template_download(task, kind, list(need)) or DOWNLOADS.get((kind, tag)) or f"{tag}.safetensors"
        self.missing.append(Missing(slot, kind, what, self.files(kind), download))
        return download


def template_download(task: str, kind: str, need: list[str]) -> str | None:
    """The file an official template for `task` downloads for `kind`, when the template library is present.

    The library is another part of the planner; without it (or with no match) the caller's table decides."""
    if not task:
        return None
    try:
        from agent.templates import load_library
    except ImportError:
        return None
    try:
        candidates = load_library().for_task(task)
    except (OSError, ValueError, KeyError, LookupError):
        return None
    dirs = _TEMPLATE_DIRS.get(kind, (kind,))
    for template in candidates:
        for model in getattr(template, "models", []) or []:
            name = str(getattr(model, "name", ""))
            low = name.lower()
            if str(getattr(model, "directory", "")) in dirs and \
                    all(any(p in low for p in group.split("|")) for group in need):
                return name
    return None
