"""A tiny random-weight SD1.x-architecture checkpoint, written locally, for tests and the offline demo.

It has the real architecture's structure (4-level UNet with cross-attention, 8x VAE, CLIP text encoder)
at toy sizes, so it loads through exactly the code path of real checkpoints: as one `.safetensors` file in
the original LDM layout, and as a diffusers folder. Its pictures are noise: the weights are random.
"""

from __future__ import annotations

import json
from pathlib import Path

from nodes.diffusion.ldm_export import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm

TINY_NAME = "tiny-sd15-random"
TINY_WORDS = ["a", "the", "of", "in", "and", "red", "fox", "snow", "cat", "dog", "castle", "mountain", "city",
              "night", "portrait", "painting", "oil", "watercolor", "blurry", "watermark", "text", "lighthouse"]

UNET_CONFIG = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 32, 64, 64],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 64, "attention_head_dim": 8, "norm_num_groups": 32,
}
VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 32, 32, 32], "norm_num_groups": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "steps_offset": 1,
             "skip_prk_steps": True, "set_alpha_to_one": False, "clip_sample": False, "prediction_type": "epsilon"}


def write_tiny_tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer over bytes plus a few whole words; returns its vocabulary size."""
    from nodes.diffusion.models import bytes_to_unicode

    base = list(bytes_to_unicode().values())
    merges: list[tuple[str, str]] = []
    vocab = base + [c + "</w>" for c in base]
    known = set(vocab)
    for word in TINY_WORDS:  # merge each word left to right into one token
        current = word[0]
        for i, ch in enumerate(word[1:], start=1):
            right = ch + ("</w>" if i == len(word) - 1 else "")
            merged = current + right
            if (current, right) not in merges:
                merges.append((current, right))
            if merged not in known:
                vocab.append(merged)
                known.add(merged)
            current = merged
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n",
                                       encoding="utf-8")
    return len(vocab)


def build_tiny_components(vocab_size: int, seed: int = 0):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    vae = AutoencoderKL(**VAE_CONFIG)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1,
        # 64 wide with 1 head: CLIP's 64-per-head rule, which the single-file loader relies on
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1))
    return unet, vae, text


def write_tiny_checkpoint(models_dir: Path, name: str = TINY_NAME, *, single_file: bool = True,
                          diffusers_folder: bool = True, seed: int = 0) -> dict[str, Path]:
    """Write the tiny model under `models_dir/checkpoints/` in the requested layouts; returns their paths."""
    import torch
    from safetensors.torch import save_file

    from nodes.diffusion.models import quiet_libraries

    quiet_libraries()
    checkpoints = Path(models_dir) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    tokenizer_dir = checkpoints / f"{name}.tokenizer"
    vocab_size = write_tiny_tokenizer(tokenizer_dir)
    unet, vae, text = build_tiny_components(vocab_size, seed)
    if single_file:
        state = {}
        state.update(unet_to_ldm(unet.state_dict(), UNET_CONFIG))
        state.update(vae_to_ldm(vae.state_dict(), VAE_CONFIG))
        state.update(clip_to_ldm(text.state_dict()))
        state = {k: v.contiguous().to(torch.float32) for k, v in state.items()}
        path = checkpoints / f"{name}.safetensors"
        save_file(state, str(path), metadata={"nodeweaver": "tiny random-weight demo model; pictures are noise"})
        written["single_file"] = path
    if diffusers_folder:
        folder = checkpoints / name
        unet.save_pretrained(str(folder / "unet"))
        vae.save_pretrained(str(folder / "vae"))
        text.save_pretrained(str(folder / "text_encoder"))
        write_tiny_tokenizer(folder / "tokenizer")
        (folder / "scheduler").mkdir(parents=True, exist_ok=True)
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER), encoding="utf-8")
        (folder / "model_index.json").write_text(json.dumps({
            "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
            "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False,
        }), encoding="utf-8")
        written["diffusers_folder"] = folder
    return written


def write_tiny_lora(models_dir: Path, name: str = "tiny-lora.safetensors", rank: int = 4, seed: int = 1) -> Path:
    """A kohya-format LoRA for the tiny model's attention projections (UNet and text encoder)."""
    import torch
    from safetensors.torch import save_file

    unet, _vae, text = build_tiny_components(write_tiny_tokenizer(Path(models_dir) / "tokenizers" / "_tiny"))
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, module in (("lora_unet_", unet), ("lora_te_", text)):
        for module_name, child in module.named_modules():
            if not module_name.endswith(("to_q", "to_k", "to_v", "q_proj", "v_proj")):
                continue
            out_f, in_f = child.weight.shape
            key = prefix + module_name.replace(".", "_")
            state[f"{key}.lora_down.weight"] = torch.randn(rank, in_f, generator=generator) * 0.5
            state[f"{key}.lora_up.weight"] = torch.randn(out_f, rank, generator=generator) * 0.5
            state[f"{key}.alpha"] = torch.tensor(float(rank))
    path = Path(models_dir) / "loras" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


SDXL_UNET_CONFIG = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [32, 64, 64], "transformer_layers_per_block": [1, 1, 2],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 128, "attention_head_dim": [1, 1, 1], "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 32 + 6 * 256, "norm_num_groups": 32,
}


def write_tiny_sdxl_checkpoint(models_dir: Path, name: str = "tiny-sdxl-random", seed: int = 0) -> Path:
    """A tiny SDXL-architecture single file (two text encoders, pooled embeddings, size conditioning)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodes.diffusion.models import quiet_libraries

    quiet_libraries()
    checkpoints = Path(models_dir) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    vocab = write_tiny_tokenizer(checkpoints / f"{name}.tokenizer")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SDXL_UNET_CONFIG)
    vae = AutoencoderKL(**VAE_CONFIG)
    common = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 1, "max_position_embeddings": 77, "bos_token_id": vocab - 2,
              "eos_token_id": vocab - 1, "pad_token_id": vocab - 1}
    text1 = CLIPTextModel(CLIPTextConfig(hidden_act="quick_gelu", **common))
    text2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_act="gelu", projection_dim=32, **common))
    state = {}
    state.update(unet_to_ldm(unet.state_dict(), SDXL_UNET_CONFIG))
    state.update(vae_to_ldm(vae.state_dict(), VAE_CONFIG))
    state.update({k.replace("cond_stage_model.", "conditioner.embedders.0."): v
                  for k, v in clip_to_ldm(text1.state_dict()).items()})
    state.update(open_clip_to_ldm(text2.state_dict(), "conditioner.embedders.1.model."))
    path = checkpoints / f"{name}.safetensors"
    save_file({k: v.contiguous().float() for k, v in state.items()}, str(path),
              metadata={"nodeweaver": "tiny random-weight SDXL-architecture model"})
    return path


SD2_UNET_CONFIG = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": [64, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 64,
    "attention_head_dim": [1, 1], "use_linear_projection": True, "norm_num_groups": 32,
}


def write_tiny_sd2_checkpoint(models_dir: Path, name: str = "tiny-sd2-random", seed: int = 0) -> Path:
    """A tiny SD2-architecture single file: one OpenCLIP text encoder, linear attention projections."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodes.diffusion.models import quiet_libraries

    quiet_libraries()
    checkpoints = Path(models_dir) / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    vocab = write_tiny_tokenizer(checkpoints / f"{name}.tokenizer")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SD2_UNET_CONFIG)
    vae = AutoencoderKL(**VAE_CONFIG)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=3, num_attention_heads=1, max_position_embeddings=77,
                                        hidden_act="gelu", bos_token_id=vocab - 2, eos_token_id=vocab - 1,
                                        pad_token_id=vocab - 1))
    state = {}
    state.update(unet_to_ldm(unet.state_dict(), SD2_UNET_CONFIG))
    state.update(vae_to_ldm(vae.state_dict(), VAE_CONFIG))
    state.update(open_clip_to_ldm(text.state_dict(), "cond_stage_model.model."))
    path = checkpoints / f"{name}.safetensors"
    save_file({k: v.contiguous().float() for k, v in state.items()}, str(path),
              metadata={"nodeweaver": "tiny random-weight SD2-architecture model"})
    return path
