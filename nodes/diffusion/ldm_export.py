"""Diffusers-layout weights → the original single-file (LDM) layout of SD1.x/SD2.x checkpoints.

Used to write test and demo checkpoints as real single `.safetensors` files, which then load back through
the same converter real checkpoints use. The key maps follow the published SD ↔ diffusers correspondence,
generalised to any number of blocks and layers per block.
"""

from __future__ import annotations

from typing import Any


def _unet_prefix_map(n_blocks: int, layers: int, attn_down: list[bool], attn_up: list[bool]) -> list[tuple[str, str]]:
    """(ldm prefix, diffusers prefix) pairs for the UNet's blocks."""
    pairs: list[tuple[str, str]] = []
    for i in range(n_blocks):
        for j in range(layers):
            pairs.append((f"input_blocks.{1 + i * (layers + 1) + j}.0.", f"down_blocks.{i}.resnets.{j}."))
            if attn_down[i]:
                pairs.append((f"input_blocks.{1 + i * (layers + 1) + j}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < n_blocks - 1:
            pairs.append((f"input_blocks.{(i + 1) * (layers + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
        for j in range(layers + 1):
            pairs.append((f"output_blocks.{i * (layers + 1) + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if attn_up[i]:
                pairs.append((f"output_blocks.{i * (layers + 1) + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < n_blocks - 1:
            slot = 2 if attn_up[i] else 1
            pairs.append((f"output_blocks.{i * (layers + 1) + layers}.{slot}.", f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    pairs.append(("middle_block.0.", "mid_block.resnets.0."))
    pairs.append(("middle_block.2.", "mid_block.resnets.1."))
    return pairs


_UNET_FIXED = {
    "time_embedding.linear_1.": "time_embed.0.", "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.", "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
}
_RESNET = [("norm1.", "in_layers.0."), ("conv1.", "in_layers.2."), ("norm2.", "out_layers.0."),
           ("conv2.", "out_layers.3."), ("time_emb_proj.", "emb_layers.1."), ("conv_shortcut.", "skip_connection.")]


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    n_blocks = len(config["block_out_channels"])
    layers = int(config["layers_per_block"])
    attn_down = ["CrossAttn" in t for t in config["down_block_types"]]
    attn_up = ["CrossAttn" in t for t in config["up_block_types"]]
    prefixes = sorted(_unet_prefix_map(n_blocks, layers, attn_down, attn_up), key=lambda p: -len(p[1]))
    out = {}
    for key, value in state.items():
        new = None
        for hf, ldm in _UNET_FIXED.items():
            if key.startswith(hf):
                new = ldm + key[len(hf):]
                break
        if new is None:
            for ldm_prefix, hf_prefix in prefixes:
                if key.startswith(hf_prefix):
                    rest = key[len(hf_prefix):]
                    if ".resnets." in hf_prefix:
                        for hf_part, ldm_part in _RESNET:
                            if rest.startswith(hf_part):
                                rest = ldm_part + rest[len(hf_part):]
                                break
                    new = ldm_prefix + rest
                    break
        if new is None:
            raise KeyError(f"no LDM name for UNet weight {key}")
        out["model.diffusion_model." + new] = value
    return out


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    n_blocks = len(config["block_out_channels"])
    pairs: list[tuple[str, str]] = []
    for i in range(n_blocks):
        pairs.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block."))
        pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        pairs.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{n_blocks - 1 - i}.block."))
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{n_blocks - 1 - i}.upsample."))
    for part in ("encoder", "decoder"):
        pairs.append((f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1."))
        pairs.append((f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2."))
        pairs.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
        pairs.append((f"{part}.conv_norm_out.", f"{part}.norm_out."))
    attention = [("group_norm.", "norm."), ("to_q.", "q."), ("to_k.", "k."), ("to_v.", "v."), ("to_out.0.", "proj_out.")]
    out = {}
    for key, value in state.items():
        new = key
        for hf, ldm in pairs:
            if key.startswith(hf):
                rest = key[len(hf):]
                if "mid_block.attentions" in hf:
                    for hf_part, ldm_part in attention:
                        if rest.startswith(hf_part):
                            rest = ldm_part + rest[len(hf_part):]
                            if ldm_part in ("q.", "k.", "v.", "proj_out.") and rest.endswith("weight") \
                                    and value.dim() == 2:
                                value = value[:, :, None, None]  # LDM keeps these as 1x1 convolutions
                            break
                new = ldm + rest.replace("conv_shortcut.", "nin_shortcut.")
                break
        out["first_stage_model." + new] = value
    return out


def clip_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """Real checkpoints name CLIP weights `text_model.*` (newer transformers drop that level in memory)."""
    return {"cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
            for k, v in state.items()}


def open_clip_to_ldm(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A transformers CLIP text model (with projection) → OpenCLIP's layout (SD2 and SDXL's second encoder)."""
    import torch

    plain = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {prefix + "token_embedding.weight": plain["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": plain["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": plain["final_layer_norm.weight"],
           prefix + "ln_final.bias": plain["final_layer_norm.bias"]}
    if "text_projection.weight" in plain:
        out[prefix + "text_projection"] = plain["text_projection.weight"].T.contiguous()
    layers = sorted({int(k.split(".")[2]) for k in plain if k.startswith("encoder.layers.")})
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    for i in layers:
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat(
                [plain[src + f"self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
            for hf, ldm in names.items():
                out[dst + f"{ldm}.{kind}"] = plain[src + f"{hf}.{kind}"]
    return out
