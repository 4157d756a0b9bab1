"""ControlNet nodes with ComfyUI's names and semantics: ControlNetLoader, DiffControlNetLoader, ControlNetApply,
ControlNetApplyAdvanced, and the Canny preprocessor.

A CONTROL_NET is a loaded diffusers ControlNetModel plus (once applied) its hint image, strength and step
window. The apply nodes put a copy on each conditioning as `{"control": ...}`, chained to the control already
there (as ComfyUI's set_previous_controlnet); KSampler (nodes.diffusion.sampling._Guidance) runs every control
in the chain on the latent and hands the summed residuals to the UNet. Single files in the original (LDM /
ComfyUI) layout are converted with diffusers' converter; diffusers folders load with `from_pretrained`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from pathlib import Path
from typing import Any

from nodes.diffusion.models import (
    UNET_PREFIX,
    CheckpointError,
    DiffusionModel,
    infer_unet_config,
    pick_device,
    pick_dtype,
    quiet_libraries,
    read_state_dict,
    torch_or_error,
)
from runtime import folders
from runtime.errors import BadRequest

LDM_PREFIX = "control_model."
HINT_UPSCALE = "nearest-exact"  # ComfyUI's ControlBase.upscale_algorithm


# ---- the objects between nodes ----------------------------------------------------------------------------
@dataclasses.dataclass
class ControlNetWeights:
    """A loaded ControlNet model (shared through the model cache)."""

    model: Any  # diffusers ControlNetModel
    family: str  # sd1 | sd2 | sdxl
    device: str
    dtype: Any

    def to(self, device: str) -> ControlNetWeights:
        self.model.to(device)
        self.device = device
        return self


@dataclasses.dataclass
class ControlNet:
    """CONTROL_NET: the weights and, once applied, the hint (IMAGE as [B, 3, H, W]), strength and the part of
    the schedule (start/end percent) where it acts; `previous` is the control it was chained onto."""

    weights: ControlNetWeights
    hint: Any = None
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: ControlNet | None = None
    _hints: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def applied(self, hint, strength: float, start: float, end: float, previous: ControlNet | None) -> ControlNet:
        return ControlNet(self.weights, hint, float(strength), float(start), float(end), previous)

    def active_at(self, timestep: float) -> bool:
        """ComfyUI's timestep_range check, done in model time: percent p is timestep (1 - p) * 999, and sigma
        grows with the timestep, so sigma(end) <= sigma <= sigma(start) is the same window."""
        high = math.inf if self.start_percent <= 0 else (-math.inf if self.start_percent >= 1
                                                         else (1 - self.start_percent) * 999)
        low = math.inf if self.end_percent <= 0 else (-math.inf if self.end_percent >= 1
                                                      else (1 - self.end_percent) * 999)
        return low <= timestep <= high

    def hint_for(self, sample, torch):
        """The hint at the latent's pixel size (centre crop, nearest-exact, as ComfyUI), batched like it."""
        from nodes.diffusion.image_nodes import upscale
        from nodes.diffusion.sampling import _repeat_to_batch

        key = (tuple(sample.shape), str(sample.device))
        if key not in self._hints:
            hint = upscale(self.hint.float(), sample.shape[-1] * 8, sample.shape[-2] * 8, HINT_UPSCALE, "center")
            hint = _repeat_to_batch(hint, sample.shape[0])
            self._hints = {key: hint.to(device=sample.device, dtype=self.weights.dtype)}
        return self._hints[key]


def control_residuals(control: ControlNet | None, sample, timestep, context, added: dict | None):
    """The chain's summed (down residuals, mid residual) for one conditioning, or None when no control in the
    chain is active at this step; each control's output is scaled by its strength (conditioning_scale)."""
    if control is None:
        return None
    torch = torch_or_error()
    previous = control_residuals(control.previous, sample, timestep, context, added)
    t = float(timestep.reshape(-1)[0]) if hasattr(timestep, "reshape") else float(timestep)
    if control.hint is None or not control.active_at(t):
        return previous
    weights = control.weights
    width = int(getattr(weights.model.config, "cross_attention_dim", context.shape[-1]))
    if width != context.shape[-1]:
        raise BadRequest(f"this ControlNet ({weights.family}) expects text embeddings {width} wide but the "
                         f"conditioning's are {context.shape[-1]}: use a ControlNet made for this checkpoint's "
                         "family", details={"controlnet_family": weights.family})
    kwargs: dict[str, Any] = {}
    if weights.family == "sdxl" or getattr(weights.model.config, "addition_embed_type", None) == "text_time":
        if added is None:
            raise BadRequest("this ControlNet is an SDXL one: use it with an SDXL checkpoint")
        kwargs["added_cond_kwargs"] = added
    down, mid = weights.model(sample.to(weights.dtype), timestep, encoder_hidden_states=context.to(weights.dtype),
                              controlnet_cond=control.hint_for(sample, torch),
                              conditioning_scale=control.strength, return_dict=False, **kwargs)
    if previous is None:
        return list(down), mid
    prev_down, prev_mid = previous
    return [a + b for a, b in zip(prev_down, down, strict=True)], prev_mid + mid


# ---- loading ------------------------------------------------------------------------------------------------
def _family(sd: dict[str, Any]) -> str:
    if "label_emb.0.0.weight" in sd:
        return "sdxl"
    key = next((k for k in sd if k.endswith("attn2.to_k.weight")), None)
    return "sd2" if key is not None and int(sd[key].shape[1]) == 1024 else "sd1"


def controlnet_config(sd: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The diffusers ControlNetModel config of an LDM-layout ControlNet (prefix stripped), from its weights."""
    torch = torch_or_error()
    family = _family(sd)
    as_unet = {UNET_PREFIX + k: v for k, v in sd.items()}
    # A ControlNet is a UNet's encoder half: infer_unet_config reads out_channels off the (absent) output conv,
    # so give it a shape-only stand-in with the input's channel count.
    channels = int(sd["input_blocks.0.0.weight"].shape[1])
    as_unet[UNET_PREFIX + "out.2.weight"] = torch.empty((channels,), device="meta")
    config = infer_unet_config(as_unet, family)
    for key in ("sample_size", "out_channels", "up_block_types"):
        config.pop(key, None)
    config["conditioning_channels"] = int(sd["input_hint_block.0.weight"].shape[1])
    return config, family


def _count_children(keys, prefix: str) -> int:
    found = {int(k[len(prefix):].split(".")[0]) for k in keys
             if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()}
    return max(found) + 1 if found else 0


def diffusers_layout_config(sd: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The ControlNetModel config of a single file that already uses diffusers' weight names."""
    keys = set(sd)
    n_blocks = _count_children(keys, "down_blocks.")
    if n_blocks == 0:
        raise CheckpointError("a diffusers-layout ControlNet without down_blocks weights")
    channels = [int(sd[f"down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in range(n_blocks)]
    attn = [f"down_blocks.{i}.attentions.0.proj_in.weight" in sd for i in range(n_blocks)]
    depth = [_count_children(keys, f"down_blocks.{i}.attentions.0.transformer_blocks.") if a else 1
             for i, a in enumerate(attn)]
    key = next((k for k in keys if k.endswith("attn2.to_k.weight")), None)
    cross_dim = int(sd[key].shape[1]) if key else 768
    proj = next((k for k in keys if k.endswith("proj_in.weight")), None)
    sdxl = "add_embedding.linear_1.weight" in sd
    family = "sdxl" if sdxl else ("sd2" if cross_dim == 1024 else "sd1")
    embedding = [int(sd["controlnet_cond_embedding.conv_in.weight"].shape[0])] + [
        int(sd[f"controlnet_cond_embedding.blocks.{2 * i + 1}.weight"].shape[0])
        for i in range(_count_children(keys, "controlnet_cond_embedding.blocks.") // 2)]
    config: dict[str, Any] = {
        "in_channels": int(sd["conv_in.weight"].shape[1]),
        "conditioning_channels": int(sd["controlnet_cond_embedding.conv_in.weight"].shape[1]),
        "conditioning_embedding_out_channels": embedding,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "block_out_channels": channels,
        "layers_per_block": _count_children(keys, "down_blocks.0.resnets."),
        "cross_attention_dim": cross_dim,
        "attention_head_dim": 8 if family == "sd1" else [max(1, c // 64) for c in channels],
        "use_linear_projection": proj is not None and sd[proj].dim() == 2,
        "transformer_layers_per_block": depth if sdxl else 1,
    }
    if sdxl:
        config.update(addition_embed_type="text_time", addition_time_embed_dim=256,
                      projection_class_embeddings_input_dim=int(sd["add_embedding.linear_1.weight"].shape[1]))
    return config, family


def _convert_single_file(sd: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    if any(k.startswith(LDM_PREFIX) for k in sd):
        sd = {k[len(LDM_PREFIX):]: v for k, v in sd.items() if k.startswith(LDM_PREFIX)}
    if "controlnet_cond_embedding.conv_in.weight" in sd:  # diffusers' names in one file (as ComfyUI reads)
        config, family = diffusers_layout_config(sd)
        return sd, config, family
    if "zero_convs.0.0.weight" not in sd or "input_hint_block.0.weight" not in sd:
        raise CheckpointError(f"{path.name} is not a ControlNet (no zero_convs / input_hint_block weights); "
                              "supported: SD1.x, SD2.x and SDXL ControlNets (single files or diffusers folders)")
    config, family = controlnet_config(sd)
    converted = convert_controlnet_checkpoint(sd, config)
    for ldm, hf in (("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2.")):
        for part in ("weight", "bias"):  # diffusers' converter leaves SDXL's size/pooled embedding out
            if ldm + part in sd:
                converted[hf + part] = sd[ldm + part]
    return {k: v for k, v in converted.items() if v is not None}, config, family


def _diffusers_dir(path: Path) -> Path | None:
    """The diffusers folder a path names: the folder itself, or the folder of its weights file."""
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    if not config.is_file() or (path.is_file() and not path.name.startswith("diffusion_pytorch_model")):
        return None
    try:
        return folder if json.loads(config.read_text(encoding="utf-8")).get("_class_name") == "ControlNetModel" \
            else None
    except (OSError, ValueError):
        return None


def load_controlnet_model(path: Path, device: str, base: DiffusionModel | None = None) -> ControlNetWeights:
    """Load a ControlNet file or folder; a 'diff' ControlNet (a `difference` key) gets `base`'s UNet weights
    added, as ComfyUI's DiffControlNetLoader does."""
    torch = torch_or_error()
    quiet_libraries()
    from diffusers import ControlNetModel

    folder = _diffusers_dir(path)
    if folder is not None:
        try:
            model = ControlNetModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"cannot load the ControlNet folder {folder.name}: {exc}") from exc
        family = "sdxl" if model.config.addition_embed_type == "text_time" else (
            "sd2" if model.config.cross_attention_dim == 1024 else "sd1")
    else:
        if path.is_dir():
            raise CheckpointError(f"{path.name} is a folder without a ControlNetModel config.json")
        sd = read_state_dict(path)
        difference = "difference" in sd
        state, config, family = _convert_single_file(sd, path)
        if difference and base is not None:
            _add_base_weights(state, base, torch)
        accepted = set(inspect.signature(ControlNetModel.__init__).parameters)
        model = ControlNetModel(**{k: v for k, v in config.items() if k in accepted})
        missing, _unexpected = model.load_state_dict(state, strict=False)
        if missing:
            raise CheckpointError(f"{path.name}: the ControlNet weights do not fit the detected architecture "
                                  f"({len(missing)} missing, e.g. {missing[0]})")
    dtype = pick_dtype(device)
    return ControlNetWeights(model.to(device=device, dtype=dtype).eval(), family, device, dtype)


def _add_base_weights(state: dict[str, Any], base: DiffusionModel, torch) -> None:
    with torch.no_grad():
        unet = base.unet.state_dict()
        for key, value in state.items():
            if key in unet and unet[key].shape == value.shape:
                state[key] = value + unet[key].to(device=value.device, dtype=value.dtype)


def load_controlnet(name: str, base: DiffusionModel | None = None) -> ControlNet:
    """ControlNetLoader's work: find `name` in the controlnet folder and load it once (the model cache)."""
    from runtime.models import model_cache

    path = folders.model_path("controlnet", name)
    if path is None:
        raise CheckpointError(f"ControlNet {name!r} not found in {folders.models_dir() / 'controlnet'}")
    device = pick_device()
    folder = _diffusers_dir(path)
    key_path = folder / "config.json" if folder is not None else path
    kind = "controlnet" if base is None else f"controlnet-diff-{id(base.unet)}"
    weights = model_cache.load(key_path, lambda: load_controlnet_model(path, device, base), kind=kind,
                               device=device)
    return ControlNet(model_cache.to_device(weights, device))


# ---- Canny: ComfyUI's comfy_extras Canny is kornia.filters.canny with its defaults; so is this one ----------
def canny(image, low_threshold: float, high_threshold: float):
    """Edges of an IMAGE [B, H, W, C] as an IMAGE of 0/1 (grey, 5x5 gaussian blur, Sobel, non-maximum
    suppression, double threshold, hysteresis), computed by kornia exactly as ComfyUI's node does."""
    torch_or_error()
    try:
        from kornia.filters import canny as kornia_canny
    except ImportError as exc:
        raise BadRequest("Canny needs kornia (part of the diffusion extra): pip install kornia") from exc
    _magnitude, edges = kornia_canny(image[..., :3].movedim(-1, 1).float(), low_threshold, high_threshold)
    return edges.repeat(1, 3, 1, 1).movedim(1, -1)


# ---- nodes --------------------------------------------------------------------------------------------------
class _GPUNode:
    USES_GPU = True


def _hint(image: Any, what: str):
    """IMAGE [B, H, W, C] → the control hint [B, 3, H, W] (an alpha channel is dropped)."""
    torch = torch_or_error()
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[-1] < 3 or 0 in image.shape:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise BadRequest(f"{what}: image must be an IMAGE [batch, height, width, channels>=3]; got {shape}")
    return image[..., :3].movedim(-1, 1)


def _check_control(control_net: Any, what: str) -> ControlNet:
    if not isinstance(control_net, ControlNet):
        raise BadRequest(f"{what}: control_net must come from a ControlNet loader; got {type(control_net).__name__}")
    return control_net


class ControlNetLoader(_GPUNode):
    DESCRIPTION = ("Loads a ControlNet (SD1.x, SD2.x or SDXL; a single file in the original layout or a diffusers "
                   "folder) to guide sampling with an image.")
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"control_net_name": (folders.model_files("controlnet"),)}}

    def load_controlnet(self, control_net_name: str):
        return (load_controlnet(control_net_name),)


class DiffControlNetLoader(_GPUNode):
    DESCRIPTION = "Loads a ControlNet; a 'diff' ControlNet gets the model's UNet weights added to its own."
    RETURN_TYPES = ("CONTROL_NET",)
    FUNCTION = "load_controlnet"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model": ("MODEL",), "control_net_name": (folders.model_files("controlnet"),)}}

    def load_controlnet(self, model, control_net_name: str):
        if not isinstance(model, DiffusionModel):
            raise BadRequest(f"DiffControlNetLoader: model must be a MODEL; got {type(model).__name__}")
        return (load_controlnet(control_net_name, model),)


_STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})


class ControlNetApply(_GPUNode):
    DESCRIPTION = "Deprecated (as in ComfyUI): guides one conditioning, and its negative, with a ControlNet."
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "apply_controlnet"
    CATEGORY = "conditioning/controlnet"
    DEPRECATED = True

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"conditioning": ("CONDITIONING",), "control_net": ("CONTROL_NET",),
                             "image": ("IMAGE",), "strength": _STRENGTH}}

    def apply_controlnet(self, conditioning: list, control_net, image, strength: float):
        if strength == 0:
            return (conditioning,)
        control = _check_control(control_net, "ControlNetApply")
        hint = _hint(image, "ControlNetApply")
        out = []
        for entry in conditioning:
            extras = dict(entry[1])
            extras["control"] = control.applied(hint, strength, 0.0, 1.0, extras.get("control"))
            extras["control_apply_to_uncond"] = True  # the negative gets this control too (ComfyUI's)
            out.append([entry[0], extras])
        return (out,)


class ControlNetApplyAdvanced(_GPUNode):
    DESCRIPTION = ("Guides sampling with a ControlNet and a hint image, on both conditionings, at a strength "
                   "and for a part of the schedule (start/end percent); chains onto controls already applied.")
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    FUNCTION = "apply_controlnet"
    CATEGORY = "conditioning/controlnet"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "control_net": ("CONTROL_NET",),
            "image": ("IMAGE",), "strength": _STRENGTH,
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}),
        }, "optional": {"vae": ("VAE",)}}

    def apply_controlnet(self, positive: list, negative: list, control_net, image, strength: float,
                         start_percent: float, end_percent: float, vae=None):
        """`vae` is for ControlNets that take a latent hint (ComfyUI's latent_format ones); the SD1.x/SDXL
        ControlNets loaded here take pixels, so it is accepted and unused, as ComfyUI does for them."""
        if strength == 0:
            return (positive, negative)
        control = _check_control(control_net, "ControlNetApplyAdvanced")
        hint = _hint(image, "ControlNetApplyAdvanced")
        made: dict[int, ControlNet] = {}  # one new control per previous one, shared by both conditionings
        out = []
        for conditioning in (positive, negative):
            entries = []
            for entry in conditioning:
                extras = dict(entry[1])
                previous = extras.get("control")
                if id(previous) not in made:
                    made[id(previous)] = control.applied(hint, strength, start_percent, end_percent, previous)
                extras["control"] = made[id(previous)]
                extras["control_apply_to_uncond"] = False
                entries.append([entry[0], extras])
            out.append(entries)
        return (out[0], out[1])


class Canny(_GPUNode):
    DESCRIPTION = "Canny edge detection (white edges on black), the usual hint for a canny ControlNet."
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "detect_edge"
    CATEGORY = "image/preprocessors"
    OUTPUT_TOOLTIPS = (None,)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": ("IMAGE", {}),
            "low_threshold": ("FLOAT", {"default": 0.4, "min": 0.01, "max": 0.99, "step": 0.01}),
            "high_threshold": ("FLOAT", {"default": 0.8, "min": 0.01, "max": 0.99, "step": 0.01}),
        }}

    def detect_edge(self, image, low_threshold: float, high_threshold: float):
        _hint(image, "Canny")
        if low_threshold > high_threshold:  # kornia refuses this too
            raise BadRequest(f"Canny: low_threshold ({low_threshold}) must not exceed high_threshold "
                             f"({high_threshold})")
        return (canny(image, low_threshold, high_threshold),)


NODE_CLASS_MAPPINGS = {
    "ControlNetLoader": ControlNetLoader,
    "DiffControlNetLoader": DiffControlNetLoader,
    "ControlNetApply": ControlNetApply,
    "ControlNetApplyAdvanced": ControlNetApplyAdvanced,
    "Canny": Canny,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "ControlNetLoader": "Load ControlNet Model",
    "DiffControlNetLoader": "Load ControlNet Model (diff)",
    "ControlNetApply": "Apply ControlNet (OLD)",
    "ControlNetApplyAdvanced": "Apply ControlNet",
}
