"""Diffusion nodes end to end on the CPU with the tiny random-weight SD1.x model (both file layouts)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

pytestmark = pytest.mark.slow  # torch end to end: tiny random-weight models through the real loaders

from PIL import Image  # noqa: E402

from compiler import load_workflow, validate  # noqa: E402
from compiler.png import png_text_chunks  # noqa: E402
from engine import Executor  # noqa: E402
from nodes.diffusion.tiny import TINY_NAME, write_tiny_checkpoint, write_tiny_lora  # noqa: E402

CKPT = f"{TINY_NAME}.safetensors"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(root)
    write_tiny_lora(root)
    return root


@pytest.fixture
def env(models_root, isolated_folders, monkeypatch, registry):
    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(models_root))
    Image.new("RGB", (72, 56), (200, 30, 30)).save(isolated_folders / "input" / "photo.png")
    rgba = Image.new("RGBA", (40, 40), (0, 0, 255, 128))
    rgba.save(isolated_folders / "input" / "scan.png")
    return {"registry": registry, "out": isolated_folders / "output", "executor": Executor(registry)}


def default_t2i(ckpt: str = CKPT, width: int = 64, height: int = 48, batch: int = 2, seed: int = 5) -> dict:
    """ComfyUI's default text-to-image graph (API format, its own node ids)."""
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 3, "cfg": 8.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in the snow", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, watermark", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def run(env, workflow: dict, extra: dict | None = None):
    result = validate(workflow, env["registry"])
    assert result.valid, [str(e) for e in result.errors]
    out = env["executor"].execute(result.plan, extra_data=extra or {})
    assert out.status == "success", out.error
    return out


def saved(env, out, node: str = "9") -> list:
    return [env["out"] / i["subfolder"] / i["filename"] for i in out.outputs[node]["images"]]


def test_default_text_to_image_saves_pngs_with_the_workflow(env):
    workflow = default_t2i()
    ui_workflow = {"nodes": [], "links": [], "version": 0.4}
    out = run(env, workflow, {"extra_pnginfo": {"workflow": ui_workflow}})
    files = saved(env, out)
    assert len(files) == 2
    for path in files:
        with Image.open(path) as image:
            assert image.size == (64, 48) and image.mode == "RGB"
        chunks = png_text_chunks(path.read_bytes())
        assert json.loads(chunks["prompt"]) == workflow
        assert json.loads(chunks["workflow"]) == ui_workflow
    # nodeweaver reads the workflow back from its own PNG
    assert load_workflow(files[0], env["registry"]).prompt == workflow
    image = out.output_value("8")
    assert image.shape == (2, 48, 64, 3) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0


def test_same_seed_same_image_and_single_file_equals_diffusers_folder(env):
    a = run(env, default_t2i(seed=11)).output_value("8")
    env["executor"].cache.clear()
    b = run(env, default_t2i(seed=11)).output_value("8")
    assert torch.equal(a, b)
    folder = run(env, default_t2i(ckpt=TINY_NAME, seed=11)).output_value("8")
    assert torch.allclose(a, folder, atol=1e-5)
    other = run(env, default_t2i(seed=12)).output_value("8")
    assert not torch.allclose(a, other)


def test_model_loads_once_through_the_model_cache(env):
    from runtime.models import model_cache

    before = model_cache.loads
    wf = default_t2i(seed=21)
    run(env, wf)
    wf["5"]["inputs"]["batch_size"] = 1
    env["executor"].cache.clear()
    run(env, wf)
    assert model_cache.loads - before <= 1


def test_img2img(env):
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "2": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["4", 2]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 4, "cfg": 6.0, "sampler_name": "dpmpp_2m",
                                                   "scheduler": "karras", "denoise": 0.6, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["2", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "watercolor painting", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "img2img", "images": ["8", 0]}},
    }
    out = run(env, wf)
    assert out.output_value("1").shape == (1, 56, 72, 3)
    assert out.output_value("2")["samples"].shape == (1, 4, 7, 9)
    [path] = saved(env, out)
    with Image.open(path) as image:
        assert image.size == (72, 56)


def test_lora_changes_the_image_and_strength_zero_does_not(env):
    def with_lora(strength: float) -> dict:
        wf = default_t2i(seed=3, batch=1)
        wf["10"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
                                                          "lora_name": "tiny-lora.safetensors",
                                                          "strength_model": strength, "strength_clip": strength}}
        wf["3"]["inputs"]["model"] = ["10", 0]
        wf["6"]["inputs"]["clip"] = ["10", 1]
        wf["7"]["inputs"]["clip"] = ["10", 1]
        return wf

    plain = run(env, default_t2i(seed=3, batch=1)).output_value("8")
    lora = run(env, with_lora(1.0)).output_value("8")
    zero = run(env, with_lora(0.0)).output_value("8")
    assert not torch.allclose(plain, lora, atol=1e-4)
    assert torch.allclose(plain, zero, atol=1e-6)
    # the cached model itself was not modified by the LoRA
    env["executor"].cache.clear()
    assert torch.allclose(run(env, default_t2i(seed=3, batch=1)).output_value("8"), plain, atol=1e-6)


def test_hires_fix_and_advanced_sampler(env):
    wf = default_t2i(width=64, height=64, batch=1)
    wf["3"]["inputs"]["sampler_name"] = "euler_ancestral"
    wf["10"] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact",
                                                           "scale_by": 1.5}}
    wf["11"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["4", 0], "add_noise": "enable", "noise_seed": 9, "steps": 4, "cfg": 7.0, "sampler_name": "heun",
        "scheduler": "simple", "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["10", 0],
        "start_at_step": 2, "end_at_step": 10000, "return_with_leftover_noise": "disable"}}
    wf["8"]["inputs"]["samples"] = ["11", 0]
    out = run(env, wf)
    assert out.output_value("10")["samples"].shape == (1, 4, 12, 12)
    [path] = saved(env, out)
    with Image.open(path) as image:
        assert image.size == (96, 96)


def test_image_nodes_upscale_invert_and_mask(env):
    wf = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "scan.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ImageScaleBy", "inputs": {"image": ["2", 0], "upscale_method": "lanczos", "scale_by": 2.0}},
        "4": {"class_type": "ImageScale", "inputs": {"image": ["3", 0], "upscale_method": "bilinear", "width": 50,
                                                     "height": 30, "crop": "center"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "up"}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    out = run(env, wf)
    image, mask = out.output_value("1", 0), out.output_value("1", 1)
    assert image.shape == (1, 40, 40, 3) and mask.shape == (1, 40, 40)
    assert abs(float(mask.mean()) - (1 - 128 / 255)) < 1e-3
    inverted = out.output_value("2")
    assert torch.allclose(inverted, 1 - image)
    assert out.output_value("3").shape == (1, 80, 80, 3)
    assert out.output_value("4").shape == (1, 30, 50, 3)
    assert out.outputs["6"]["images"][0]["type"] == "temp"


def test_errors_are_clear(env, models_root):
    bad = default_t2i()
    bad["4"]["inputs"]["ckpt_name"] = "missing.safetensors"
    bad["3"]["inputs"]["sampler_name"] = "euler_fancy"
    result = validate(bad, env["registry"])
    kinds = {(e.type, e.input_name) for e in result.errors}
    assert ("value_not_in_list", "ckpt_name") in kinds and ("value_not_in_list", "sampler_name") in kinds
    (models_root / "checkpoints" / "broken.safetensors").write_bytes(b"not a model at all")
    out = env["executor"].execute(validate(default_t2i(ckpt="broken.safetensors"), env["registry"]).plan)
    assert out.status == "error" and out.error["exception_type"] == "CheckpointError"
    assert "cannot read checkpoint broken.safetensors" in out.error["exception_message"]
    (models_root / "checkpoints" / "broken.safetensors").unlink()


def test_nodes_validate_without_running_torch(registry):
    for name in ("CheckpointLoaderSimple", "KSampler", "SaveImage", "LoadImage", "LoraLoader", "ImageScaleBy"):
        assert registry.is_executable(name)
    assert "euler_ancestral" in registry.spec("KSampler").input("sampler_name").choices


def test_sdxl_single_file_path(env, models_root):
    from nodes.diffusion.models import load_single_file
    from nodes.diffusion.tiny import write_tiny_sdxl_checkpoint

    path = write_tiny_sdxl_checkpoint(models_root)
    model, clip, _vae = load_single_file(path, "cpu")
    assert model.family == "sdxl" and [type(e).__name__ for e in clip.encoders] == [
        "CLIPTextModel", "CLIPTextModelWithProjection"]
    wf = default_t2i(ckpt=path.name, width=64, height=64, batch=1)
    wf["3"]["inputs"].update(sampler_name="dpmpp_2m", scheduler="karras")
    out = run(env, wf)
    positive = out.output_value("6")
    assert positive[0][0].shape == (1, 77, 128) and positive[0][1]["pooled_output"].shape == (1, 32)
    assert out.output_value("8").shape == (1, 64, 64, 3)


def test_sd2_single_file_path(env, models_root):
    from nodes.diffusion.models import load_single_file
    from nodes.diffusion.tiny import write_tiny_sd2_checkpoint

    path = write_tiny_sd2_checkpoint(models_root)
    model, clip, _vae = load_single_file(path, "cpu")
    assert model.family == "sd2" and model.unet.config.use_linear_projection
    assert clip.encoders[0].config.num_hidden_layers == 2  # the last layer is not used by SD2
    out = run(env, default_t2i(ckpt=path.name, width=64, height=64, batch=1))
    assert out.output_value("6")[0][0].shape == (1, 77, 64)
    assert out.output_value("8").shape == (1, 64, 64, 3)


def test_vae_encode_crops_odd_pixels_from_the_centre_as_comfyui(env):
    """A 20x13 image encodes as its centred 16x8 crop (ComfyUI's vae_encode_crop_pixels), not the top-left one."""
    import torch

    from nodes.diffusion.image_nodes import VAEEncode

    vae = env["registry"].get_class("CheckpointLoaderSimple")().load_checkpoint(CKPT)[2]
    pixels = torch.rand(1, 13, 20, 3, generator=torch.Generator().manual_seed(3))
    [whole] = VAEEncode().encode(vae, pixels)
    [centre] = VAEEncode().encode(vae, pixels[:, 2:10, 2:18, :].contiguous())
    [corner] = VAEEncode().encode(vae, pixels[:, :8, :16, :].contiguous())
    assert torch.allclose(whole["samples"], centre["samples"], atol=1e-5)
    assert not torch.allclose(whole["samples"], corner["samples"], atol=1e-3)
