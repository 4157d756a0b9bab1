"""Benchmark: our KSampler path against diffusers' own StableDiffusionPipeline, same model and settings.

Both run prompt → image on the same in-memory components (random weights; SD1.5's sizes by default), with
Euler on the "normal" (linspace) schedule, the same resolution, steps and guidance. Prints seconds per
run, the ratio diffusers/ours (≥ 1.0 means ours is at least as fast) and, on a GPU, peak memory.

Run: python -m evals.benchmarks.diffusion [--size sd15|tiny] [--res 256] [--steps 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SD15_UNET = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD15_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
            "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4}


def build(size: str, device: str):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodes.diffusion import tiny
    from nodes.diffusion.models import SCHEDULER_CONFIG, _finish, load_tokenizer, quiet_libraries

    quiet_libraries()
    folder = Path(tempfile.mkdtemp())
    vocab = tiny.write_tiny_tokenizer(folder)
    tokenizer = load_tokenizer(folder)
    torch.manual_seed(0)
    if size == "sd15":
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=768, intermediate_size=3072,
                                            num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu",
                                            max_position_embeddings=77, bos_token_id=vocab - 2,
                                            eos_token_id=vocab - 1, pad_token_id=vocab - 1))
    else:
        unet, vae, text = tiny.build_tiny_components(vocab)
    config = dict(SCHEDULER_CONFIG, prediction_type="epsilon")
    return _finish(unet, vae, [text], [tokenizer], "sd1", "epsilon", config, device,
                   torch.float16 if device == "cuda" else torch.float32, torch)


def ours(model, clip, vae, prompt: str, negative: str, res: int, steps: int, cfg: float, seed: int):
    import torch

    from nodes.diffusion.encode import encode_text
    from nodes.diffusion.image_nodes import VAEDecode
    from nodes.diffusion.sampling import sample

    latent = {"samples": torch.zeros([1, 4, res // 8, res // 8])}
    out = sample(model, seed, steps, cfg, "euler", "normal", encode_text(clip, prompt), encode_text(clip, negative),
                 latent)
    return VAEDecode().decode(vae, out)[0]


def pipeline_for(model, clip, vae):
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    scheduler = EulerDiscreteScheduler.from_config(dict(model.scheduler_config, timestep_spacing="linspace"))
    pipe = StableDiffusionPipeline(vae=vae.vae, text_encoder=clip.encoders[0], tokenizer=clip.tokenizers[0],
                                   unet=model.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed(fn, repeat: int, device: str) -> tuple[float, int | None]:
    import torch

    times, peak = [], None
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
            peak = max(peak or 0, torch.cuda.max_memory_allocated())
        times.append(time.perf_counter() - start)
    return statistics.median(times), peak


def main(argv: list[str] | None = None) -> int:
    import torch

    from nodes.diffusion.models import pick_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["sd15", "tiny"], default="sd15")
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    device = pick_device()
    model, clip, vae = build(args.size, device)
    pipe = pipeline_for(model, clip, vae)
    prompt, negative = "a red fox in the snow", "blurry, watermark"

    def run_ours():
        return ours(model, clip, vae, prompt, negative, args.res, args.steps, args.cfg, 1)

    def run_pipe():
        generator = torch.Generator("cpu").manual_seed(1)
        return pipe(prompt, negative_prompt=negative, height=args.res, width=args.res, num_inference_steps=args.steps,
                    guidance_scale=args.cfg, generator=generator, output_type="pt").images

    run_ours()
    run_pipe()  # warm-up: kernels, allocator
    ours_s, ours_peak = timed(run_ours, args.repeat, device)
    pipe_s, pipe_peak = timed(run_pipe, args.repeat, device)
    gpu = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {gpu}; model: {args.size} random weights; {args.res}x{args.res}, {args.steps} steps, "
          f"cfg {args.cfg}, euler/normal")
    print(f"{'path':<34}{'seconds':>9}{'peak GPU MiB':>14}")
    fmt = lambda peak: f"{peak / 2 ** 20:>14.0f}" if peak else f"{'n/a':>14}"  # noqa: E731
    print(f"{'NodeWeaver KSampler (nodes)':<34}{ours_s:>9.3f}{fmt(ours_peak)}")
    print(f"{'diffusers StableDiffusionPipeline':<34}{pipe_s:>9.3f}{fmt(pipe_peak)}")
    print(f"speed ratio diffusers/ours: {pipe_s / ours_s:.3f} (target >= 1.0)")
    if ours_peak and pipe_peak:
        print(f"memory ratio diffusers/ours: {pipe_peak / ours_peak:.3f} (target >= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
