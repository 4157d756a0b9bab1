"""Hardening of the diffusion nodes: bounded image inputs (LoadImage) and sampler lists that are exactly
what runs here (KSampler, KSamplerAdvanced)."""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from conftest import run_cli  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from compiler import validate  # noqa: E402
from engine import Executor  # noqa: E402
from nodes.diffusion import image_nodes  # noqa: E402
from nodes.diffusion.ksampling import SigmaTable, run_sampler, schedule, training_sigmas  # noqa: E402
from nodes.diffusion.models import DiffusionModel  # noqa: E402
from nodes.diffusion.sampling import SAMPLERS, SCHEDULERS, sample  # noqa: E402


# ---- LoadImage: bounded inputs ------------------------------------------------------------------------------
def write_gif(path, frames: int, size: tuple[int, int], transparent: bool = False) -> None:
    """An animation whose frames differ (Pillow merges identical ones): a square and a dot moving over black."""
    images = []
    for i in range(frames):
        frame = Image.new("P", size, 0)
        frame.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        ImageDraw.Draw(frame).rectangle([i * 3, i * 3, i * 3 + 9, i * 3 + 9], fill=1 + i % 2)
        frame.putpixel((i % size[0], (i // size[0]) % size[1]), 1 + i % 2)
        images.append(frame)
    extra = {"transparency": 0} if transparent else {}
    images[0].save(path, save_all=True, append_images=images[1:], duration=40, loop=0, disposal=2, **extra)


def load_workflow(name: str) -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def test_small_animation_loads_as_one_batch_with_its_mask(registry, isolated_folders):
    write_gif(isolated_folders / "input" / "anim.gif", 8, (64, 48), transparent=True)
    result = validate(load_workflow("anim.gif"), registry)
    assert result.valid, [str(e) for e in result.errors]
    out = Executor(registry).execute(result.plan)
    assert out.status == "success", out.error
    image, mask = out.output_value("1", 0), out.output_value("1", 1)
    assert image.shape == (8, 48, 64, 3) and image.dtype == torch.float32
    assert mask.shape == (8, 48, 64)
    # frame 3: the green square at (9..18, 9..18), opaque; the transparent black background has mask 1
    assert torch.allclose(image[3, 12, 12], torch.tensor([0.0, 1.0, 0.0]))
    assert float(mask[3, 12, 12]) == 0.0 and float(mask[3, 40, 60]) == 1.0
    assert len(out.outputs["2"]["images"]) == 8


def test_an_oversized_animation_is_refused_before_decoding(registry, isolated_folders):
    """60 frames of 1024x1024 (a ~55 KB GIF) would take ~1 GB as tensors: refused at validation, and at run
    time when the file changes after validation, quickly and with the limit and how to raise it."""
    inputs = isolated_folders / "input"
    write_gif(inputs / "big.gif", 60, (1024, 1024))
    invalid = validate(load_workflow("big.gif"), registry)
    [error] = invalid.errors
    assert (error.type, error.input_name) == ("custom_validation_failed", "image")
    assert "62,914,560 pixels" in error.details and "MAX_INPUT_PIXELS" in error.details

    write_gif(inputs / "swap.gif", 2, (32, 32))
    plan = validate(load_workflow("swap.gif"), registry).plan
    (inputs / "big.gif").replace(inputs / "swap.gif")
    started = time.perf_counter()
    out = Executor(registry).execute(plan)
    elapsed = time.perf_counter() - started
    assert out.status == "error" and out.error["exception_type"] == "ImageInputTooLarge"
    message = out.error["exception_message"]
    assert "60 frame(s) of 1024x1024" in message and "over the limit of 33,554,432 pixels" in message
    assert "raise" in message
    assert elapsed < 5.0  # liveness: the header is read, the frames never are (decoding them took ~6 s)


def test_the_default_bounds_admit_ordinary_inputs_and_can_be_raised(registry, isolated_folders, monkeypatch):
    inputs = isolated_folders / "input"
    Image.new("RGB", (4096, 4096), (10, 20, 30)).save(inputs / "still.png", compress_level=1)
    write_gif(inputs / "clip.gif", 60, (512, 512))
    write_gif(inputs / "long.gif", 1100, (8, 8))
    for name in ("still.png", "clip.gif"):
        result = validate(load_workflow(name), registry)
        assert result.valid, [str(e) for e in result.errors]
    [error] = validate(load_workflow("long.gif"), registry).errors
    assert "1100 frames, over the limit of 1024 frames" in error.details

    write_gif(inputs / "big.gif", 60, (1024, 1024))
    assert not validate(load_workflow("big.gif"), registry).valid
    monkeypatch.setattr(image_nodes, "MAX_INPUT_PIXELS", 64 * 1024 * 1024)
    assert validate(load_workflow("big.gif"), registry).valid


def test_unreadable_and_bomb_images_are_clear_errors(registry, isolated_folders, monkeypatch):
    inputs = isolated_folders / "input"
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    [error] = validate(load_workflow("broken.png"), registry).errors
    assert "'broken.png' cannot be read as an image" in error.details

    Image.effect_noise((64, 64), 60).save(inputs / "cut.png")
    (inputs / "cut.png").write_bytes((inputs / "cut.png").read_bytes()[:600])  # the header is intact
    plan = validate(load_workflow("cut.png"), registry).plan
    out = Executor(registry).execute(plan)
    assert out.status == "error" and out.error["exception_type"] == "BadRequest"
    assert "'cut.png' cannot be decoded (damaged or truncated)" in out.error["exception_message"]

    Image.new("RGB", (300, 300)).save(inputs / "wide.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # Pillow refuses over twice this
    [error] = validate(load_workflow("wide.png"), registry).errors
    assert "decompression-bomb" in error.details


# ---- samplers: the lists are what runs ------------------------------------------------------------------
def t2i(sampler_name: str, scheduler: str) -> dict:
    return {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 4, "cfg": 7.0, "sampler_name": sampler_name, "scheduler": scheduler, "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
    }


@pytest.fixture
def checkpoint(isolated_folders):
    (isolated_folders / "models" / "checkpoints").mkdir()
    (isolated_folders / "models" / "checkpoints" / "m.safetensors").write_bytes(b"")


def test_every_listed_pair_validates_and_unlisted_names_are_not_in_list(registry, checkpoint):
    for node in ("KSampler", "KSamplerAdvanced"):
        assert registry.spec(node).input("sampler_name").choices == list(SAMPLERS)
        assert registry.spec(node).input("scheduler").choices == list(SCHEDULERS)
    assert {"euler", "dpmpp_2m", "ddpm", "uni_pc", "lms", "deis"} <= set(SAMPLERS)
    for sampler_name in SAMPLERS:
        for scheduler in SCHEDULERS:
            result = validate(t2i(sampler_name, scheduler), registry)
            assert result.valid, (sampler_name, scheduler, [str(e) for e in result.errors])
    for sampler_name, scheduler, bad_input in (("euler_fancy", "normal", "sampler_name"), ("dpmpp_9m", "karras",
                                               "sampler_name"), ("euler", "kl_pessimal", "scheduler")):
        [error] = validate(t2i(sampler_name, scheduler), registry).errors
        assert (error.type, error.input_name) == ("value_not_in_list", bad_input)


def test_builtin_sampler_lists_win_over_the_shared_catalog(catalog_registry, checkpoint):
    assert catalog_registry.is_executable("KSampler")
    assert catalog_registry.spec("KSampler").input("sampler_name").choices == list(SAMPLERS)
    [error] = validate(t2i("euler_fancy", "normal"), catalog_registry).errors
    assert error.type == "value_not_in_list"


@pytest.mark.slow
def test_cli_node_lists_what_validation_accepts():
    for node in ("KSampler", "KSamplerAdvanced"):
        proc = run_cli("node", node, "--json")
        assert proc.returncode == 0, proc.stderr
        required = json.loads(proc.stdout)["input"]["required"]
        assert required["sampler_name"][0] == list(SAMPLERS)
        assert required["scheduler"][0] == list(SCHEDULERS)


# A UNet stand-in that is the exact noise predictor for Gaussian data N(0, DATA_STD^2): sampling with it
# must end near that distribution, whatever the sampler and schedule.
DATA_STD = 0.5
SD1_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear"}


class GaussianUnet:
    def __init__(self) -> None:
        self.table = SigmaTable(training_sigmas(SD1_SCHEDULE))

    def __call__(self, x, timestep, encoder_hidden_states=None, **_):
        t = torch.as_tensor(timestep).reshape(-1)[:1].float().clamp(0, 999)
        alpha_bar = 1.0 / (1.0 + float(self.table.t_to_sigma(t)[0]) ** 2)
        eps = x * (math.sqrt(1.0 - alpha_bar) / (alpha_bar * DATA_STD ** 2 + 1.0 - alpha_bar))
        return SimpleNamespace(sample=eps)


def run_pairs(pairs) -> None:
    model = DiffusionModel(GaussianUnet(), "sd1", "epsilon", dict(SD1_SCHEDULE), "cpu", torch.float32)
    cond = [[torch.zeros(1, 77, 8), {}]]
    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    for sampler_name, scheduler in pairs:
        out = sample(model, 3, 6, 1.0, sampler_name, scheduler, cond, cond, latent)["samples"]
        std = float(out.std())  # it starts as noise of std ~14.6
        if scheduler == "linear_quadratic":
            # made for flow models: on an SD model it jumps from sigma 7.8 to 0 in its last step (the sample
            # collapses to the mean; dpm_fast/dpm_adaptive stop at 7.8; ipndm_v's variable-step weights blow up
            # over the 100x change of step size), in ComfyUI 0.3.64 exactly the same way
            assert torch.isfinite(out).all(), (sampler_name, scheduler)
            continue
        assert torch.isfinite(out).all() and 0.15 < std < 4.0, (sampler_name, scheduler, std)


def test_every_listed_sampler_and_scheduler_runs():
    """Each sampler on karras (ddpm+karras was refused before) and each scheduler with a one-step and a
    multistep sampler; beta runs with the ancestral samplers too."""
    run_pairs([(name, "karras") for name in SAMPLERS] + [(name, "beta") for name in ("euler_ancestral", "lcm")]
              + [(sampler, name) for name in SCHEDULERS for sampler in ("ddpm", "uni_pc")])


@pytest.mark.slow
def test_every_listed_sampler_runs_with_every_listed_scheduler():
    run_pairs([(sampler, scheduler) for sampler in SAMPLERS for scheduler in SCHEDULERS])


def test_ddpm_is_the_ddpm_posterior_in_sigma_space():
    """DDPM's posterior step, rewritten for sigmas, is algebraically ancestral Euler (eta 1): given the same
    denoiser and noise the two agree to rounding, on every schedule."""
    table = SigmaTable(training_sigmas(SD1_SCHEDULE))

    def denoiser(x, sigma):
        return torch.tanh(x) / (1.0 + sigma)

    for scheduler in SCHEDULERS:
        sigmas = schedule(scheduler, 12, table)
        runs = []
        for name in ("ddpm", "euler_ancestral"):
            generator = torch.Generator().manual_seed(2)
            x = torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64) * float(sigmas[0])
            noise = lambda: torch.randn(2, 4, 8, 8, generator=generator, dtype=torch.float64)  # noqa: E731,B023
            runs.append(run_sampler(name, denoiser, x, sigmas, noise, lambda: None))
        assert torch.allclose(runs[0], runs[1], atol=1e-10), scheduler


def test_beta_schedule_crowds_steps_at_both_ends():
    table = SigmaTable(training_sigmas(SD1_SCHEDULE))
    sigmas = schedule("beta", 20, table)
    assert len(sigmas) == 21 and float(sigmas[-1]) == 0.0
    assert math.isclose(float(sigmas[0]), table.sigma_max, rel_tol=1e-6)
    assert all(float(a) > float(b) for a, b in zip(sigmas[:-1], sigmas[1:], strict=True))
    t = table.sigma_to_t(sigmas[:-1])
    gaps = (t[:-1] - t[1:]).tolist()
    assert gaps[0] < gaps[9] and gaps[-1] < gaps[9]  # Beta(0.6, 0.6) puts more steps at both ends
