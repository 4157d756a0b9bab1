"""LoRA files (kohya's `lora_unet_*`/`lora_te_*` and diffusers/peft `unet.*.lora_A` layouts) as weight deltas."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nodes.diffusion.models import CheckpointError, ClipModel, DiffusionModel, LoraPatch, read_state_dict

log = logging.getLogger(__name__)

_SUFFIXES = {
    ".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha",
    ".lora_A.weight": "down", ".lora_B.weight": "up", ".lora.down.weight": "down", ".lora.up.weight": "up",
}
_PREFIXES = [("lora_unet_", "unet"), ("lora_te1_", "te1"), ("lora_te2_", "te2"), ("lora_te_", "te1"),
             ("unet.", "unet"), ("text_encoder_2.", "te2"), ("text_encoder.", "te1")]


def _underscored(name: str) -> str:
    return name.replace(".", "_")


def _ldm_names(unet: Any, weighted: set[str]) -> dict[str, str]:
    """underscored LDM module name (input_blocks_4_1_..., ComfyUI's lora_unet_ names) -> diffusers module
    name, for LoRAs trained on single-file checkpoints (kohya's SDXL LoRAs)."""
    from nodes.diffusion.ldm_export import unet_to_ldm

    config = dict(getattr(unet, "config", {}) or {})
    if not all(k in config for k in ("block_out_channels", "layers_per_block", "down_block_types",
                                     "up_block_types")):
        return {}
    names: dict[str, str] = {}
    for name in weighted:
        try:
            (ldm_key,) = unet_to_ldm({name + ".weight": None}, config)
        except (KeyError, TypeError, ValueError):  # a module the LDM layout does not name
            continue
        ldm = ldm_key.removeprefix("model.diffusion_model.").removesuffix(".weight")
        names[_underscored(ldm)] = name
    return names


def _tables(model: DiffusionModel, clip: ClipModel) -> dict[str, dict[str, str]]:
    """underscored module name -> real module name, per target (text_model level optional for CLIP); the
    UNet answers to its diffusers names and to the LDM names ComfyUI uses."""
    tables: dict[str, dict[str, str]] = {"unet": {}}
    weighted = {name for name, module in model.unet.named_modules() if hasattr(module, "weight") and name}
    tables["unet"].update(_ldm_names(model.unet, weighted))
    for name in weighted:
        tables["unet"][_underscored(name)] = name
    for i, encoder in enumerate(clip.encoders):
        table: dict[str, str] = {}
        for name, module in encoder.named_modules():
            if hasattr(module, "weight"):
                key = _underscored(name)
                table[key] = name
                table[key.removeprefix("text_model_")] = name
                table["text_model_" + key] = name
        tables[f"te{i + 1}"] = table
    return tables


def load_lora(path: Path, model: DiffusionModel, clip: ClipModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """(unet deltas, clip deltas keyed 'te1.<module>') for a LoRA file; errors when it fits nothing."""

    state = read_state_dict(path)
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        for suffix, part in _SUFFIXES.items():
            if key.endswith(suffix):
                groups.setdefault(key[: -len(suffix)], {})[part] = value
                break
    tables = _tables(model, clip)
    unet_deltas: dict[str, Any] = {}
    clip_deltas: dict[str, Any] = {}
    unmatched = 0
    for base, parts in groups.items():
        if "down" not in parts or "up" not in parts:
            continue
        target, name = None, None
        for prefix, which in _PREFIXES:
            if base.startswith(prefix):
                target = which
                name = _underscored(base[len(prefix):])
                break
        module_name = tables.get(target or "", {}).get(name or "")
        if module_name is None:
            unmatched += 1
            continue
        down, up = parts["down"].float(), parts["up"].float()
        rank = down.shape[0]
        scale = float(parts["alpha"]) / rank if "alpha" in parts else 1.0
        delta = (up.flatten(1) @ down.flatten(1)) * scale
        owner = model.unet if target == "unet" else clip.encoders[int(target[2]) - 1]
        weight = dict(owner.named_modules())[module_name].weight
        if delta.numel() != weight.numel():
            unmatched += 1
            continue
        delta = delta.reshape(weight.shape)
        if target == "unet":
            unet_deltas[module_name] = delta
        else:
            clip_deltas[f"{target}.{module_name}"] = delta
    if not unet_deltas and not clip_deltas:
        raise CheckpointError(f"LoRA {path.name} matches no layer of this model: is it made for another "
                              f"architecture than {model.family}?")
    if unmatched:
        log.warning("LoRA %s: %d of %d layers did not match the model", path.name, unmatched, len(groups))
    return unet_deltas, clip_deltas


def apply_lora(model: DiffusionModel, clip: ClipModel, path: Path, strength_model: float,
               strength_clip: float) -> tuple[DiffusionModel, ClipModel]:
    from runtime.models import model_cache

    unet_deltas, clip_deltas = model_cache.load(path, lambda: load_lora(path, model, clip), kind="lora",
                                                target=id(model.unet))
    new_model = model.with_patch(LoraPatch(unet_deltas, strength_model)) if strength_model else model
    new_clip = clip.with_patch(LoraPatch(clip_deltas, strength_clip)) if strength_clip and clip_deltas else clip
    return new_model, new_clip
