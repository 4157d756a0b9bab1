"""Diffusion nodes with ComfyUI's names, inputs, outputs and socket types.

torch is imported only when a node runs, so the registry knows (and validates) these nodes even where the
diffusion extra is not installed.
"""

from __future__ import annotations

from typing import Any

from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS
from runtime import folders

MAX_RESOLUTION = 16384
SEED_MAX = 0xFFFFFFFFFFFFFFFF


class _GPUNode:
    USES_GPU = True


def _checkpoint_choices() -> list[str]:
    return folders.model_files("checkpoints")


class CheckpointLoaderSimple(_GPUNode):
    DESCRIPTION = ("Loads a diffusion model checkpoint (SD1.x, SD2.x or SDXL; one .safetensors file or a "
                   "diffusers folder); diffusion models are used to denoise latents.")
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The model used for denoising latents.",
                       "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")
    FUNCTION = "load_checkpoint"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"ckpt_name": (_checkpoint_choices(), {
            "tooltip": "The name of the checkpoint (model) to load."})}}

    @classmethod
    def IS_CHANGED(cls, ckpt_name: str) -> str:
        path = folders.model_path("checkpoints", ckpt_name)
        if path is None:
            return "missing"
        target = path / "model_index.json" if path.is_dir() else path
        stat = target.stat()
        return f"{path}:{stat.st_mtime_ns}:{stat.st_size}"

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any]:
        from nodes.diffusion.models import CheckpointError, load_checkpoint

        path = folders.model_path("checkpoints", ckpt_name)
        if path is None:
            raise CheckpointError(f"checkpoint {ckpt_name!r} not found in {folders.models_dir() / 'checkpoints'}")
        return load_checkpoint(path)


class LoraLoader(_GPUNode):
    DESCRIPTION = ("LoRAs are used to modify diffusion and CLIP models, altering the way in which latents are "
                   "denoised such as applying styles. Multiple LoRA nodes can be linked together.")
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "load_lora"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
            "lora_name": (folders.model_files("loras"), {"tooltip": "The name of the LoRA."}),
            "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                         "tooltip": "How strongly to modify the diffusion model. This value can be negative."}),
            "strength_clip": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01,
                                        "tooltip": "How strongly to modify the CLIP model. This value can be negative."}),
        }}

    def load_lora(self, model, clip, lora_name: str, strength_model: float, strength_clip: float):
        from nodes.diffusion.lora import apply_lora
        from nodes.diffusion.models import CheckpointError

        if strength_model == 0 and strength_clip == 0:
            return (model, clip)
        path = folders.model_path("loras", lora_name)
        if path is None:
            raise CheckpointError(f"LoRA {lora_name!r} not found in {folders.models_dir() / 'loras'}")
        return apply_lora(model, clip, path, strength_model, strength_clip)


class CLIPSetLastLayer:
    DESCRIPTION = ("Makes CLIP encode prompts from an earlier layer: -1 is the last layer, -2 the one before "
                   "(\"clip skip 2\"). SD2 and SDXL already use their penultimate layer by default.")
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"
    CATEGORY = "conditioning"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "clip": ("CLIP",),
            "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1, "step": 1}),
        }}

    def set_last_layer(self, clip, stop_at_clip_layer: int):
        """A copy of the CLIP (weights and LoRA patches shared) that encodes from `stop_at_clip_layer`."""
        layer = int(stop_at_clip_layer)
        if not -24 <= layer <= -1:
            raise ValueError(f"stop_at_clip_layer must be between -24 and -1, got {layer}")
        return (clip.with_layer(layer),)


class CLIPTextEncode(_GPUNode):
    DESCRIPTION = ("Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
                   "diffusion model towards generating specific images.")
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"
    CATEGORY = "conditioning"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
        }}

    def encode(self, clip, text: str):
        from nodes.diffusion.encode import encode_text

        return (encode_text(clip, text),)


def _sampler_inputs() -> dict:
    return {
        "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                          "tooltip": "The Classifier-Free Guidance scale."}),
        # Exactly the names that run here (any sampler with any scheduler), so the list is the validation.
        "sampler_name": (list(SAMPLERS), {"tooltip": "The algorithm used when sampling."}),
        "scheduler": (list(SCHEDULERS), {"tooltip": "How noise is removed over the steps."}),
        "positive": ("CONDITIONING", {"tooltip": "What to include in the image."}),
        "negative": ("CONDITIONING", {"tooltip": "What to exclude from the image."}),
        "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
    }


class KSampler(_GPUNode):
    DESCRIPTION = "Uses the provided model, positive and negative conditioning to denoise the latent image."
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        extra = _sampler_inputs()
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                             "tooltip": "The random seed used for creating the noise."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000,
                              "tooltip": "The number of steps used in the denoising process."}),
            **{k: extra[k] for k in ("cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image")},
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "The amount of denoising applied; lower values keep more of the "
                                             "input latent (img2img)."}),
        }}

    def sample(self, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
               denoise=1.0):
        from nodes.diffusion.sampling import sample

        return (_guard_memory(lambda: sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                             latent_image, denoise), latent_image),)


class KSamplerAdvanced(_GPUNode):
    DESCRIPTION = "Samples a range of steps of a schedule, optionally without adding noise or leaving noise in."
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = "sampling"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        extra = _sampler_inputs()
        return {"required": {
            "model": ("MODEL",),
            "add_noise": (["enable", "disable"],),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            **{k: extra[k] for k in ("cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image")},
            "start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
            "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
            "return_with_leftover_noise": (["disable", "enable"],),
        }}

    def sample(self, model, add_noise, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative,
               latent_image, start_at_step, end_at_step, return_with_leftover_noise):
        from nodes.diffusion.sampling import sample

        return (_guard_memory(lambda: sample(
            model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, 1.0,
            add_noise=add_noise == "enable", start_step=start_at_step, end_step=end_at_step,
            force_full_denoise=return_with_leftover_noise != "enable"), latent_image),)


def _guard_memory(run, latent: dict):
    """Turn a GPU out-of-memory error into one that says what to change."""
    try:
        return run()
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        shape = list(latent["samples"].shape)
        raise MemoryError(f"out of GPU memory sampling a batch of {shape[0]} at {shape[3] * 8}x{shape[2] * 8}: "
                          "lower the size or batch_size, or set NODEWEAVER_DEVICE=cpu") from exc


NODE_CLASS_MAPPINGS = {
    "CheckpointLoaderSimple": CheckpointLoaderSimple,
    "LoraLoader": LoraLoader,
    "CLIPSetLastLayer": CLIPSetLastLayer,
    "CLIPTextEncode": CLIPTextEncode,
    "KSampler": KSampler,
    "KSamplerAdvanced": KSamplerAdvanced,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "CheckpointLoaderSimple": "Load Checkpoint",
    "LoraLoader": "Load LoRA",
    "CLIPSetLastLayer": "CLIP Set Last Layer",
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "KSampler": "KSampler",
    "KSamplerAdvanced": "KSampler (Advanced)",
}
