"""Pixel parity with a real ComfyUI: the same workflow, checkpoint, seed, sampler and scheduler, run by
NodeWeaver in-process and by a ComfyUI server, and the saved PNGs compared per pixel (0-255).

A measurement for a development session, not a CI test: it needs a running ComfyUI (v0.3.64 is the reference)
and a full-size SD1.5 checkpoint, because ComfyUI recognises models by their shapes and refuses tiny ones.
`--build-checkpoint PATH` writes one with random weights (the published SD1.5 configs, a fixed torch seed,
NodeWeaver's own LDM export; about 2.1 GB in fp16); put it (or a link) in both models folders.

    python -m evals.benchmarks.comfyui_parity --build-checkpoint /tmp/parity-models/checkpoints/sd15-random.safetensors
    NODEWEAVER_MODELS_DIR=/tmp/parity-models python -m evals.benchmarks.comfyui_parity \
        --comfyui http://127.0.0.1:8202 --checkpoint sd15-random.safetensors --schedulers normal karras simple
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The published SD1.5 configs (runwayml/stable-diffusion-v1-5), written out so no hub access is needed.
SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
    "flip_sin_to_cos": True, "freq_shift": 0, "layers_per_block": 2, "downsample_padding": 1,
    "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
    "cross_attention_dim": 768, "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "act_fn": "silu",
    "norm_num_groups": 32, "sample_size": 512, "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
SD15_CLIP = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
    "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
NEGATIVE = "blurry, low quality"
POSITIVE = "a photo of a lighthouse at dusk"
WEIGHTED = "(a red fox:1.3) in the snow"
TOLERANCE = 1  # per-pixel difference (0-255) that counts as a match


def build_checkpoint(path: Path, seed: int = 0) -> Path:
    """A random-weight SD1.5 single file: full architecture, so ComfyUI's shape detection accepts it."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodes.diffusion.ldm_export import clip_to_ldm, unet_to_ldm, vae_to_ldm

    torch.manual_seed(seed)
    state: dict[str, Any] = {}
    unet = UNet2DConditionModel(**SD15_UNET)
    state.update(unet_to_ldm(unet.state_dict(), SD15_UNET))
    del unet
    vae = AutoencoderKL(**SD15_VAE)
    state.update(vae_to_ldm(vae.state_dict(), SD15_VAE))
    del vae
    text = CLIPTextModel(CLIPTextConfig(**SD15_CLIP))
    state.update(clip_to_ldm(text.state_dict()))
    del text
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}, str(path),
              metadata={"nodeweaver": f"random-weight SD1.5 for ComfyUI parity (torch seed {seed})"})
    return path


def workflow(checkpoint: str, sampler: str, scheduler: str, *, seed: int, steps: int, positive: str,
             prefix: str) -> dict[str, Any]:
    """The API-format workflow both sides run: text-to-image at 64x64, cfg 7."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": NEGATIVE, "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": sampler, "scheduler": scheduler,
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


# ---- ComfyUI over HTTP ---------------------------------------------------------------------------------

def _http_json(url: str, body: dict | None = None, timeout: float = 30.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def comfyui_image(base: str, prompt: dict, timeout: float = 600.0) -> bytes:
    """Queue on ComfyUI, wait through /history, fetch the saved PNG through /view."""
    try:
        queued = _http_json(f"{base}/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"ComfyUI refused the workflow: {exc.read().decode(errors='replace')[:800]}") from None
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = _http_json(f"{base}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            break
        if entry and entry.get("status", {}).get("status_str") == "error":
            raise RuntimeError(f"ComfyUI run failed: {json.dumps(entry['status'].get('messages'))[:800]}")
        time.sleep(0.25)
    else:
        raise TimeoutError(f"ComfyUI did not finish {prompt_id} in {timeout:.0f} s")
    image = next(img for ui in entry["outputs"].values() for img in ui.get("images", []))
    query = urllib.parse.urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{base}/view?{query}", timeout=60) as response:
        return response.read()


# ---- NodeWeaver in-process -----------------------------------------------------------------------------

class NodeWeaverRunner:
    """One registry and executor for every run, so the checkpoint loads once (the output cache keeps it)."""

    def __init__(self) -> None:
        from engine.cache import OutputCache
        from engine.executor import Executor
        from nodes.registry import default_registry
        from runtime.settings import activate, load_settings

        activate(load_settings())
        self.registry = default_registry()
        self.executor = Executor(self.registry, cache=OutputCache(enabled=True))

    def samplers(self) -> tuple[list[str], list[str]]:
        """The sampler and scheduler choices NodeWeaver's KSampler schema lists."""
        required = self.registry.node_info("KSampler")["input"]["required"]
        return list(required["sampler_name"][0]), list(required["scheduler"][0])

    def image(self, prompt: dict) -> bytes:
        from compiler import validate
        from runtime import folders

        result = validate(prompt, self.registry)
        if result.plan is None:
            raise RuntimeError(f"NodeWeaver rejects the workflow: {[str(e) for e in result.errors]}")
        done = self.executor.execute(result.plan)
        if done.status != "success":
            raise RuntimeError(f"NodeWeaver run failed: {json.dumps(done.error, default=str)[:800]}")
        image = next(img for ui in done.outputs.values() for img in ui.get("images", []))
        root = {"output": folders.output_dir(), "temp": folders.temp_dir()}[image.get("type", "output")]
        return (root / image.get("subfolder", "") / image["filename"]).read_bytes()

    def close(self) -> None:
        self.executor.shutdown(wait=2.0)


# ---- comparison ----------------------------------------------------------------------------------------

@dataclass
class Row:
    sampler: str
    scheduler: str
    prompt: str
    max_diff: int | None = None
    mean_diff: float | None = None
    off: float | None = None  # share of pixel channels that differ at all
    error: str | None = None

    @property
    def within(self) -> bool:
        return self.error is None and self.max_diff is not None and self.max_diff <= TOLERANCE


def compare(ours: bytes, theirs: bytes) -> tuple[int, float, float]:
    """Max and mean absolute difference per pixel channel (0-255), and the share of channels that differ."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(ours)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(theirs)).convert("RGB"), dtype=np.int16)
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: ours {a.shape}, ComfyUI {b.shape}")
    diff = np.abs(a - b)
    return int(diff.max()), float(diff.mean()), float((diff > 0).mean())


def measure(runner: NodeWeaverRunner, base: str, checkpoint: str, sampler: str, scheduler: str, *,
            seed: int, steps: int, positive: str, keep: Path | None) -> Row:
    row = Row(sampler, scheduler, positive)
    prefix = f"parity_{sampler}_{scheduler}"
    prompt = workflow(checkpoint, sampler, scheduler, seed=seed, steps=steps, positive=positive, prefix=prefix)
    try:
        theirs = comfyui_image(base, prompt)
        ours = runner.image(prompt)
        row.max_diff, row.mean_diff, row.off = compare(ours, theirs)
    except (RuntimeError, TimeoutError, ValueError, OSError, KeyError, StopIteration) as exc:
        row.error = f"{type(exc).__name__}: {exc}"[:300]
        return row
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        (keep / f"{prefix}_nodeweaver.png").write_bytes(ours)
        (keep / f"{prefix}_comfyui.png").write_bytes(theirs)
    return row


def print_table(rows: list[Row]) -> None:
    print(f"{'sampler':<26}{'scheduler':<16}{'max':>5}{'mean':>9}{'off':>8}  within {TOLERANCE}/255?")
    for r in rows:
        label = r.sampler if r.prompt != WEIGHTED else f"{r.sampler} (weighted)"
        if r.error:
            print(f"{label:<26}{r.scheduler:<16}{'-':>5}{'-':>9}{'-':>8}  ERROR {r.error}")
        else:
            print(f"{label:<26}{r.scheduler:<16}{r.max_diff:>5}{r.mean_diff:>9.4f}{r.off:>8.2%}  {'yes' if r.within else 'NO'}")
    over = [f"{r.sampler}/{r.scheduler}" for r in rows if not r.within]
    print(f"\n{len(rows) - len(over)}/{len(rows)} within {TOLERANCE}/255; over or failed: {', '.join(over) or 'none'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-checkpoint", type=Path, metavar="PATH",
                   help="write the random-weight SD1.5 checkpoint to PATH and exit")
    p.add_argument("--comfyui", default="http://127.0.0.1:8188", help="the ComfyUI server's URL")
    p.add_argument("--checkpoint", help="checkpoint file name, as both sides list it")
    p.add_argument("--samplers", nargs="*", help="default: every sampler NodeWeaver's KSampler lists")
    p.add_argument("--schedulers", nargs="*", default=["normal", "karras", "simple"],
                   help="default: normal karras simple; 'all' for every scheduler NodeWeaver lists")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--no-weighted", action="store_true", help=f"skip the weighted prompt {WEIGHTED!r} (euler)")
    p.add_argument("--keep", type=Path, help="save both PNGs of every pair here")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.build_checkpoint:
        print(f"wrote {build_checkpoint(args.build_checkpoint)}")
        return 0
    if not args.checkpoint:
        print("--checkpoint is required (or --build-checkpoint PATH)", file=sys.stderr)
        return 2
    base = args.comfyui.rstrip("/")
    runner = NodeWeaverRunner()
    try:
        samplers, schedulers = runner.samplers()
        chosen_samplers = args.samplers or samplers
        chosen_schedulers = schedulers if args.schedulers == ["all"] else args.schedulers
        pairs = [(s, c, POSITIVE) for s in chosen_samplers for c in chosen_schedulers]
        if not args.no_weighted:
            pairs.append(("euler", "normal", WEIGHTED))
        rows = []
        for sampler, scheduler, positive in pairs:
            rows.append(measure(runner, base, args.checkpoint, sampler, scheduler, seed=args.seed,
                                steps=args.steps, positive=positive, keep=args.keep))
            r = rows[-1]
            print(f"  {sampler}/{scheduler}: " + (r.error or f"max {r.max_diff} mean {r.mean_diff:.3f}"),
                  file=sys.stderr, flush=True)
    finally:
        runner.close()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1), encoding="utf-8")
    return 0 if all(r.within for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
