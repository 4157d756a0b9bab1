"""The MODEL, CLIP and VAE objects that flow between diffusion nodes, and how they are loaded.

Single-file checkpoints (SD1.x, SD2.x, SDXL in the original LDM layout) are read with safetensors, their
architecture and sizes are inferred from the weights' names and shapes (as ComfyUI does), and diffusers'
own LDM converters map them onto diffusers modules. Diffusers folders load with `from_pretrained`. No
network is touched: every config is derived or ships with the project, and the CLIP tokenizer comes from
beside the checkpoint, the models folder, a ComfyUI installation, or CLIP's vocabulary shipped in data/.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or of an architecture NodeWeaver does not support."""


def torch_or_error():
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError("the diffusion nodes need torch: install it first (`pip install torch==2.13.0`), "
                           "then `pip install 'nodeweaver[diffusion]'`") from exc
    return torch


def quiet_libraries() -> None:
    """diffusers and transformers log advice (install accelerate ...) and progress bars; keep them quiet."""
    try:
        import diffusers.utils.logging as dlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
    except ImportError:
        pass
    try:
        import transformers.utils.logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:
        pass


def pick_device() -> str:
    """The device setting ([engine] device, --cpu), else NODEWEAVER_DEVICE, else the best available."""
    from runtime.settings import current

    forced = current().engine.device or os.environ.get("NODEWEAVER_DEVICE")
    if forced:
        return forced
    from runtime.models import best_device

    return best_device()


def pick_dtype(device: str):
    torch = torch_or_error()
    if device.startswith("cuda"):
        return torch.float16
    return torch.float32


# ---- the objects between nodes ----------------------------------------------------------------------------
@dataclass
class LoraPatch:
    """Weight deltas for named modules, applied with a strength while a model runs."""

    deltas: dict[str, Any]  # module name -> delta tensor (shaped like the module's weight)
    strength: float


@dataclass
class DiffusionModel:
    """MODEL: the denoiser, its architecture, and LoRA patches applied only while it samples."""

    unet: Any
    family: str                      # sd1 | sd2 | sdxl
    prediction_type: str             # epsilon | v_prediction
    scheduler_config: dict[str, Any]
    device: str
    dtype: Any
    patches: list[LoraPatch] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def with_patch(self, patch: LoraPatch) -> DiffusionModel:
        """A copy sharing the weights, with one more patch (the cached original stays untouched)."""
        return DiffusionModel(self.unet, self.family, self.prediction_type, self.scheduler_config, self.device,
                              self.dtype, [*self.patches, patch], self.lock)

    def patched(self):
        return _patched(self.unet, self.patches, self.lock)

    def to(self, device: str) -> DiffusionModel:
        self.unet.to(device)
        self.device = device
        return self


@dataclass
class ClipModel:
    """CLIP: tokenizer(s) and text encoder(s); SDXL has two."""

    tokenizers: list[Any]
    encoders: list[Any]
    family: str
    device: str
    dtype: Any
    patches: list[LoraPatch] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    layer_idx: int | None = None     # CLIPSetLastLayer's stop_at_clip_layer; None: the family's default layer

    def with_patch(self, patch: LoraPatch) -> ClipModel:
        return ClipModel(self.tokenizers, self.encoders, self.family, self.device, self.dtype,
                         [*self.patches, patch], self.lock, self.layer_idx)

    def with_layer(self, layer_idx: int | None) -> ClipModel:
        """A copy sharing the weights and patches that encodes from another layer (CLIPSetLastLayer)."""
        return ClipModel(self.tokenizers, self.encoders, self.family, self.device, self.dtype,
                         list(self.patches), self.lock, layer_idx)

    def patched(self):
        return _patched_many(self.encoders, self.patches, self.lock)

    def to(self, device: str) -> ClipModel:
        for encoder in self.encoders:
            encoder.to(device)
        self.device = device
        return self


@dataclass
class VaeModel:
    vae: Any
    scaling_factor: float
    device: str
    dtype: Any

    def to(self, device: str) -> VaeModel:
        self.vae.to(device)
        self.device = device
        return self

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


@contextlib.contextmanager
def _patched(module: Any, patches: list[LoraPatch], lock: threading.RLock):
    with lock:
        if not patches:
            yield
            return
        torch = torch_or_error()
        modules = dict(module.named_modules())
        backups: dict[str, Any] = {}
        try:
            with torch.no_grad():
                for patch in patches:
                    for name, delta in patch.deltas.items():
                        target = modules.get(name)
                        if target is None:
                            continue
                        if name not in backups:
                            backups[name] = target.weight.detach().clone()
                        target.weight += (patch.strength * delta).to(target.weight.device, target.weight.dtype)
            yield
        finally:
            with torch.no_grad():
                for name, original in backups.items():
                    modules[name].weight.copy_(original)


@contextlib.contextmanager
def _patched_many(modules: list[Any], patches: list[LoraPatch], lock: threading.RLock):
    with contextlib.ExitStack() as stack:
        for i, module in enumerate(modules):
            prefix = f"te{i + 1}."
            own = [LoraPatch({k[len(prefix):]: v for k, v in p.deltas.items() if k.startswith(prefix)}, p.strength)
                   for p in patches]
            stack.enter_context(_patched(module, [p for p in own if p.deltas], lock))
        yield


# ---- architecture detection -------------------------------------------------------------------------------
UNET_PREFIX = "model.diffusion_model."


def detect_family(keys: set[str]) -> str:
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    if any(k.startswith(UNET_PREFIX) for k in keys):
        raise CheckpointError("this checkpoint's UNet is not an SD1.x, SD2.x or SDXL model (its text encoder "
                              "layout is unknown); supported: SD1.x, SD2.x, SDXL single files and diffusers folders")
    raise CheckpointError("this file is not a Stable Diffusion checkpoint (no model.diffusion_model weights); "
                          "supported: SD1.x, SD2.x, SDXL single files and diffusers folders")


SD2_V_PROBE = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"


def detect_prediction(sd: dict[str, Any], family: str, in_channels: int) -> str:
    """epsilon or v_prediction, decided from the weights as ComfyUI's supported_models decides: an SD2 UNet
    (not inpainting) whose last attention block's first norm bias has a spread above 0.09 is a 768-v model;
    an SDXL file says so with a `v_pred` (or `edm_vpred.*`) key; SD1.x is epsilon."""
    if family == "sdxl":
        return "v_prediction" if "v_pred" in sd or "edm_vpred.sigma_max" in sd else "epsilon"
    if family == "sd2" and in_channels == 4:
        probe = sd.get(SD2_V_PROBE)
        if probe is not None and float(probe.float().std(unbiased=False)) > 0.09:
            return "v_prediction"
    return "epsilon"


def sampling_config(sd: dict[str, Any], family: str, prediction: str) -> dict[str, Any]:
    """The scheduler config of a single file: SD's scaled-linear betas, with the variants ComfyUI reads from an
    SDXL file's marker keys: `ztsnr` (zero terminal SNR), `edm_vpred.sigma_min/max` (continuous EDM v-pred,
    e.g. CosXL). Playground v2.5's EDM (`edm_mean`/`edm_std`) has its own latent format and is refused."""
    config = dict(SCHEDULER_CONFIG, prediction_type=prediction)
    if family != "sdxl":
        return config
    if "edm_mean" in sd and "edm_std" in sd:
        raise CheckpointError("this is a Playground v2.5 (EDM) SDXL checkpoint; its EDM sampling and latent "
                              "format are not supported here yet")
    if "edm_vpred.sigma_max" in sd:
        low = sd.get("edm_vpred.sigma_min")
        return {"_class_name": "EDMEulerScheduler", "prediction_type": "v_prediction", "sigma_data": 1.0,
                "sigma_max": float(sd["edm_vpred.sigma_max"].float().item()),
                "sigma_min": float(low.float().item()) if low is not None else 0.002}
    if "v_pred" in sd and "ztsnr" in sd:
        config["rescale_betas_zero_snr"] = True
    return config


def _count(keys: set[str], prefix: str) -> int:
    found = set()
    for key in keys:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".")[0]
            if head.isdigit():
                found.add(int(head))
    return max(found) + 1 if found else 0


def infer_unet_config(sd: dict[str, Any], family: str) -> dict[str, Any]:
    """The diffusers UNet config of an LDM UNet, read off its weights' names and shapes."""
    keys = {k[len(UNET_PREFIX):] for k in sd if k.startswith(UNET_PREFIX)}

    def w(name: str):
        return sd[UNET_PREFIX + name]

    n_input = _count(keys, "input_blocks.")
    channels: list[int] = []
    attn: list[bool] = []
    depth: list[int] = []
    layers = 0
    index = 1
    while index < n_input:
        block_layers = 0
        first = index
        while f"input_blocks.{index}.0.in_layers.2.weight" in keys:
            block_layers += 1
            index += 1
        if block_layers == 0:
            break
        layers = max(layers, block_layers)
        channels.append(int(w(f"input_blocks.{first}.0.out_layers.3.weight").shape[0]))
        has_attn = f"input_blocks.{first}.1.proj_in.weight" in keys
        attn.append(has_attn)
        depth.append(_count(keys, f"input_blocks.{first}.1.transformer_blocks.") if has_attn else 1)
        if f"input_blocks.{index}.0.op.weight" in keys:
            index += 1
        else:
            break
    context_key = next((k for k in keys if k.endswith("attn2.to_k.weight")), None)
    cross_dim = int(sd[UNET_PREFIX + context_key].shape[1]) if context_key else 768
    linear = sd[UNET_PREFIX + next(k for k in keys if k.endswith("proj_in.weight"))].dim() == 2 \
        if any(k.endswith("proj_in.weight") for k in keys) else False
    if family == "sd1":
        head_dim: Any = 8  # SD1 counts 8 heads everywhere (diffusers calls it attention_head_dim)
    else:
        head_dim = [max(1, c // 64) for c in channels]
    config: dict[str, Any] = {
        "sample_size": 128 if family == "sdxl" else 64,
        "in_channels": int(w("input_blocks.0.0.weight").shape[1]),
        "out_channels": int(w("out.2.weight").shape[0]),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
        "block_out_channels": channels,
        "layers_per_block": layers,
        "cross_attention_dim": cross_dim,
        "attention_head_dim": head_dim,
        "use_linear_projection": linear,
        "transformer_layers_per_block": depth if family == "sdxl" else 1,
        "norm_num_groups": 32,
    }
    if family == "sdxl":
        config.update(addition_embed_type="text_time", addition_time_embed_dim=256,
                      projection_class_embeddings_input_dim=int(w("label_emb.0.0.weight").shape[1]))
    return config


def infer_vae_config(sd: dict[str, Any]) -> dict[str, Any]:
    prefix = "first_stage_model."
    keys = {k[len(prefix):] for k in sd if k.startswith(prefix)}
    n_blocks = _count(keys, "encoder.down.")
    channels = [int(sd[f"{prefix}encoder.down.{i}.block.0.conv1.weight"].shape[0]) for i in range(n_blocks)]
    return {
        "in_channels": int(sd[prefix + "encoder.conv_in.weight"].shape[1]),
        "out_channels": int(sd[prefix + "decoder.conv_out.weight"].shape[0]),
        "down_block_types": ["DownEncoderBlock2D"] * n_blocks,
        "up_block_types": ["UpDecoderBlock2D"] * n_blocks,
        "block_out_channels": channels,
        "layers_per_block": _count(keys, "encoder.down.0.block."),
        "latent_channels": int(sd[prefix + "quant_conv.weight"].shape[1]) // 2
        if prefix + "quant_conv.weight" in sd else int(sd[prefix + "encoder.conv_out.weight"].shape[0]) // 2,
        "norm_num_groups": 32,
        "sample_size": 1024,
    }


def infer_clip_config(sd: dict[str, Any], prefix: str, hidden_act: str) -> dict[str, Any]:
    keys = {k[len(prefix):] for k in sd if k.startswith(prefix)}
    emb = sd[prefix + "text_model.embeddings.token_embedding.weight"]
    hidden = int(emb.shape[1])
    return {
        "vocab_size": int(emb.shape[0]),
        "hidden_size": hidden,
        "intermediate_size": int(sd[prefix + "text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": _count(keys, "text_model.encoder.layers."),
        "num_attention_heads": max(1, hidden // 64),
        "max_position_embeddings": int(sd[prefix + "text_model.embeddings.position_embedding.weight"].shape[0]),
        "hidden_act": hidden_act,
        "bos_token_id": int(emb.shape[0]) - 2,
        "eos_token_id": int(emb.shape[0]) - 1,
        "pad_token_id": int(emb.shape[0]) - 1,
    }


SCHEDULER_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                    "num_train_timesteps": 1000, "steps_offset": 1, "clip_sample": False,
                    "set_alpha_to_one": False, "timestep_spacing": "leading"}


# ---- tokenizers ---------------------------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _tokenizer_size(folder: Path) -> int | None:
    try:
        return len(json.loads((folder / "vocab.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


CLIP_VOCAB_SIZE = 49408
PACKAGED_BPE = Path(__file__).parent / "data" / "bpe_simple_vocab_16e6.txt.gz"  # OpenAI CLIP's, MIT


def _open_clip_bpe() -> Path | None:
    try:
        import open_clip  # type: ignore[import-not-found]
    except ImportError:
        return None
    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    return bpe if bpe.is_file() else None


def write_clip_vocab(bpe: Path, out: Path) -> Path:
    """Write transformers-style vocab.json/merges.txt from CLIP's gzipped BPE merge list (OpenAI's format)."""
    with gzip.open(bpe) as handle:
        merges = handle.read().decode("utf-8").split("\n")[1:CLIP_VOCAB_SIZE - 256 * 2 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    base = list(bytes_to_unicode().values())
    vocab = base + [v + "</w>" for v in base] + ["".join(p) for p in pairs] + ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n",
                                    encoding="utf-8")
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    return out


def _bundled_vocab_dir(models_root: Path) -> Path | None:
    """CLIP's vocabulary as a tokenizer folder, from open_clip if installed, else the copy shipped with NodeWeaver.

    Written once into `<models>/tokenizers/clip-openai/`; vocab.json goes last, so a half-written folder never
    counts as found.
    """
    bpe = _open_clip_bpe() or (PACKAGED_BPE if PACKAGED_BPE.is_file() else None)
    if bpe is None:
        return None
    out = models_root / "tokenizers" / "clip-openai"
    if _tokenizer_size(out) == CLIP_VOCAB_SIZE and (out / "merges.txt").is_file():
        return out
    try:
        return write_clip_vocab(bpe, out)
    except OSError as exc:
        raise CheckpointError(f"cannot write CLIP's tokenizer files to {out}: {exc}") from exc


def find_tokenizer_dir(checkpoint: Path, vocab_size: int) -> Path:
    """A CLIP tokenizer folder (vocab.json + merges.txt) whose size matches the text encoder's.

    Looked for beside the checkpoint, under the models folder, in a ComfyUI installation, and last (for CLIP's
    49408-token vocabulary) from the copy NodeWeaver ships, so a lone SD checkpoint file loads as it is.
    """
    from runtime.folders import models_dir

    candidates = [checkpoint.with_name(checkpoint.stem + ".tokenizer")]
    tokenizers_root = models_dir() / "tokenizers"
    if tokenizers_root.is_dir():
        candidates += sorted(p for p in tokenizers_root.iterdir() if p.is_dir())
    from runtime.settings import current

    comfy = current().comfyui_dir
    if comfy is not None:
        candidates.append(comfy / "comfy" / "sd1_tokenizer")
    for folder in candidates:
        if _tokenizer_size(folder) == vocab_size and (folder / "merges.txt").is_file():
            return folder
    if vocab_size == CLIP_VOCAB_SIZE:
        found = _bundled_vocab_dir(models_dir())
        if found is not None:
            return found
    raise CheckpointError(
        f"no CLIP tokenizer with {vocab_size} tokens found for {checkpoint.name}: put vocab.json and merges.txt "
        f"in {checkpoint.stem}.tokenizer/ beside it or in {tokenizers_root}/<name>/, or set NODEWEAVER_COMFYUI_DIR "
        "to a ComfyUI installation (CLIP's own 49408-token vocabulary ships with NodeWeaver)")


def load_tokenizer(folder: Path, max_length: int = 77):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=max_length,
                                             pad_token="<|endoftext|>")
    except Exception as exc:
        raise CheckpointError(f"cannot read the CLIP tokenizer in {folder}: {exc}") from exc


# ---- loading ------------------------------------------------------------------------------------------------
def read_state_dict(path: Path) -> dict[str, Any]:
    torch = torch_or_error()
    try:
        if path.suffix.lower() in (".safetensors", ".sft"):
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(str(path), map_location="cpu", weights_only=True).get("state_dict", {})
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from exc


def load_single_file(path: Path, device: str) -> tuple[DiffusionModel, ClipModel, VaeModel]:
    torch = torch_or_error()
    quiet_libraries()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    sd = read_state_dict(path)
    family = detect_family(set(sd))
    dtype = pick_dtype(device)
    unet_config = infer_unet_config(sd, family)
    unet = UNet2DConditionModel(**unet_config)
    _load(unet, convert_ldm_unet_checkpoint(sd, unet_config), "UNet", path)
    vae_config = infer_vae_config(sd)
    vae = AutoencoderKL(**vae_config)
    _load(vae, convert_ldm_vae_checkpoint(sd, vae_config), "VAE", path)
    encoders, tokenizers = [], []
    if family == "sd1":
        prefix = "cond_stage_model.transformer."
        config = infer_clip_config(sd, prefix, "quick_gelu")
        encoder = CLIPTextModel(CLIPTextConfig(**config))
        _load(encoder, {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, "text encoder", path)
        encoders.append(encoder)
    else:
        from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint

        if family == "sdxl":
            prefix1 = "conditioner.embedders.0.transformer."
            config1 = infer_clip_config(sd, prefix1, "quick_gelu")
            enc1 = CLIPTextModel(CLIPTextConfig(**config1))
            _load(enc1, {k[len(prefix1):]: v for k, v in sd.items() if k.startswith(prefix1)}, "text encoder", path)
            encoders.append(enc1)
            open_prefix = "conditioner.embedders.1.model."
        else:
            open_prefix = "cond_stage_model.model."
        width = int(sd[open_prefix + "token_embedding.weight"].shape[1])
        layers = _count({k[len(open_prefix):] for k in sd if k.startswith(open_prefix)}, "transformer.resblocks.")
        if family == "sd2":
            layers -= 1  # SD2 reads the penultimate layer: diffusers drops the last one (and so do we)
        vocab = int(sd[open_prefix + "token_embedding.weight"].shape[0])
        config2 = CLIPTextConfig(
            vocab_size=vocab, hidden_size=width,
            intermediate_size=int(sd[open_prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
            num_hidden_layers=layers, num_attention_heads=max(1, width // 64), hidden_act="gelu",
            max_position_embeddings=int(sd[open_prefix + "positional_embedding"].shape[0]),
            projection_dim=int(sd[open_prefix + "text_projection"].shape[1]) if open_prefix + "text_projection" in sd
            else width, bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=0)
        model_cls = CLIPTextModelWithProjection if family == "sdxl" else CLIPTextModel
        enc2 = model_cls(config2)
        converted = convert_open_clip_checkpoint(enc2, sd, prefix=open_prefix)
        _load(enc2, converted, "text encoder", path)
        encoders.append(enc2)
    for encoder in encoders:
        folder = find_tokenizer_dir(path, int(encoder.config.vocab_size))
        tokenizers.append(load_tokenizer(folder))
    prediction = detect_prediction(sd, family, int(unet_config.get("in_channels", 4)))
    scheduler_config = sampling_config(sd, family, prediction)
    del sd
    return _finish(unet, vae, encoders, tokenizers, family, prediction, scheduler_config, device, dtype, torch)


def load_diffusers_folder(path: Path, device: str) -> tuple[DiffusionModel, ClipModel, VaeModel]:
    torch = torch_or_error()
    quiet_libraries()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        unet = UNet2DConditionModel.from_pretrained(str(path / "unet"), local_files_only=True)
        vae = AutoencoderKL.from_pretrained(str(path / "vae"), local_files_only=True)
        encoders = [CLIPTextModel.from_pretrained(str(path / "text_encoder"), local_files_only=True)]
        tokenizers = [load_tokenizer(path / "tokenizer")]
        if (path / "text_encoder_2").is_dir():
            encoders.append(CLIPTextModelWithProjection.from_pretrained(str(path / "text_encoder_2"),
                                                                        local_files_only=True))
            tokenizers.append(load_tokenizer(path / "tokenizer_2"))
        scheduler_config = json.loads((path / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8")) \
            if (path / "scheduler" / "scheduler_config.json").is_file() else dict(SCHEDULER_CONFIG)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"cannot load diffusers folder {path.name}: {exc}") from exc
    family = "sdxl" if len(encoders) == 2 else ("sd2" if "Stable" in index.get("_class_name", "") and
                                                 unet.config.cross_attention_dim == 1024 else "sd1")
    prediction = scheduler_config.get("prediction_type", "epsilon")
    return _finish(unet, vae, encoders, tokenizers, family, prediction, scheduler_config, device,
                   pick_dtype(device), torch)


def fit_text_model_keys(module: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Match the `text_model.` level of CLIP weight names to what the installed transformers expects."""
    wants_prefix = any(k.startswith("text_model.") for k in module.state_dict())
    fitted = {}
    for key, value in state.items():
        has = key.startswith("text_model.")
        if wants_prefix and not has and not key.startswith(("text_projection", "logit_scale")):
            key = "text_model." + key
        elif not wants_prefix and has:
            key = key[len("text_model."):]
        fitted[key] = value
    return fitted


def _load(module: Any, state: dict[str, Any], what: str, path: Path) -> None:
    if what == "text encoder":
        state = fit_text_model_keys(module, state)
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing:
        raise CheckpointError(f"{path.name}: the {what} weights do not fit the detected architecture "
                              f"({len(missing)} missing, e.g. {missing[0]})")
    if unexpected:
        log.info("%s: %d unused %s weights (e.g. %s)", path.name, len(unexpected), what, unexpected[0])


def _finish(unet, vae, encoders, tokenizers, family, prediction, scheduler_config, device, dtype, torch):
    unet = unet.to(device=device, dtype=dtype).eval()
    vae_dtype = torch.float32
    vae = vae.to(device=device, dtype=vae_dtype).eval()
    encoders = [e.to(device=device, dtype=dtype).eval() for e in encoders]
    scaling = float(getattr(vae.config, "scaling_factor", 0.18215) or 0.18215)
    if family == "sdxl" and scaling == 0.18215:
        scaling = 0.13025
    model = DiffusionModel(unet, family, prediction, scheduler_config, device, dtype)
    clip = ClipModel(tokenizers, encoders, family, device, dtype)
    return model, clip, VaeModel(vae, scaling, device, vae_dtype)


def load_checkpoint(path: Path) -> tuple[DiffusionModel, ClipModel, VaeModel]:
    """Load (once per process, through the engine's model cache) a single file or a diffusers folder."""
    from runtime.models import model_cache

    device = pick_device()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise CheckpointError(f"{path.name} is a folder without model_index.json, not a diffusers model")
        key_path, loader = path / "model_index.json", lambda: load_diffusers_folder(path, device)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    else:
        key_path, loader, size = path, lambda: load_single_file(path, device), path.stat().st_size
    if device.startswith("cuda"):
        model_cache.make_room(size)  # offload least recently used models first
    loaded = model_cache.load(key_path, loader, kind="checkpoint", device=device)
    return model_cache.to_device(loaded, device)  # back from the CPU if it was offloaded
