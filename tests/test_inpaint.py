"""Inpainting and outpainting: VAEEncodeForInpaint, SetLatentNoiseMask, InpaintModelConditioning and
ImagePadForOutpaint against hand-computed results, KSampler honouring a noise mask (k-diffusion and diffusers
samplers), a 9-channel inpainting UNet's concat inputs, and an offline-planned inpaint run on the tiny model."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import shared_catalog  # noqa: E402
from PIL import Image  # noqa: E402

from compiler import validate  # noqa: E402
from engine import Executor  # noqa: E402
from nodes.diffusion.inpaint import (  # noqa: E402
    ImagePadForOutpaint,
    InpaintModelConditioning,
    SetLatentNoiseMask,
    VAEEncodeForInpaint,
)
from nodes.diffusion.tiny import TINY_NAME, write_tiny_checkpoint  # noqa: E402
from runtime.errors import BadRequest, TooLarge  # noqa: E402

CKPT = f"{TINY_NAME}.safetensors"
INPAINT_NODES = ("VAEEncodeForInpaint", "SetLatentNoiseMask", "InpaintModelConditioning", "ImagePadForOutpaint")


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(root, diffusers_folder=False)
    return root


@pytest.fixture
def tiny(models_root, monkeypatch):
    """The tiny checkpoint's (MODEL, CLIP, VAE), loaded through the real single-file loader."""
    from nodes.diffusion.models import load_checkpoint

    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(models_root))
    return load_checkpoint(models_root / "checkpoints" / CKPT)


def _cond(seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 77, 64, generator=generator), {}]]


def _image(height: int, width: int, seed: int = 0):
    return torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(seed))


# ---- schemas ----

def test_schemas_are_comfyuis(registry):
    catalog = json.loads(shared_catalog().read_text(encoding="utf-8"))
    for name in INPAINT_NODES:
        ours, theirs = registry.node_info(name), catalog[name]
        for key in ("input", "input_order", "output", "output_name", "output_is_list", "category", "display_name"):
            assert ours[key] == theirs[key], (name, key)


# ---- ImagePadForOutpaint ----

def test_pad_for_outpaint_grey_padding_and_feathered_mask():
    image = _image(100, 90)
    padded, mask = ImagePadForOutpaint().expand_image(image, left=0, top=16, right=24, bottom=0, feathering=40)
    assert padded.shape == (1, 116, 114, 3) and mask.shape == (1, 116, 114)
    assert torch.equal(padded[:, 16:, :90], image)
    assert torch.all(padded[:, :16] == 0.5) and torch.all(padded[:, :, 90:] == 0.5)
    assert torch.all(mask[:, :16] == 1) and torch.all(mask[:, :, 90:] == 1)
    inner = mask[0, 16:, :90]
    # padded on top and right only: d = min(row, 90 - col); value ((40 - d) / 40)^2 while d < 40
    assert inner[0, 10] == 1.0                                   # d = 0 at the top edge
    assert inner[10, 20] == pytest.approx(((40 - 10) / 40) ** 2)  # 10 rows down
    assert inner[50, 80] == pytest.approx(((40 - 10) / 40) ** 2)  # 10 columns from the right
    assert inner[5, 85] == pytest.approx(((40 - 5) / 40) ** 2)    # both near: the nearer counts
    assert inner[60, 20] == 0 and inner[99, 0] == 0               # far from padded sides; left/bottom not padded
    # every pixel as ComfyUI's double loop computes it
    expected = torch.zeros(100, 90)
    for i in range(100):
        for j in range(90):
            d = min(i, 100, 90, 90 - j)
            if d < 40:
                expected[i, j] = ((40 - d) / 40) * ((40 - d) / 40)
    assert torch.equal(inner, expected)


def test_pad_for_outpaint_small_image_has_no_feathering_and_huge_pads_are_refused():
    _padded, mask = ImagePadForOutpaint().expand_image(_image(60, 90), left=8, top=8, right=8, bottom=8,
                                                        feathering=40)  # 2 x 40 >= 60: no feathering
    assert mask.shape == (1, 76, 106) and float(mask[0, 8:68, 8:98].abs().sum()) == 0.0
    assert float(mask.sum()) == 76 * 106 - 60 * 90
    with pytest.raises(TooLarge, match="padded image"):
        ImagePadForOutpaint().expand_image(_image(8, 8), left=16384, top=16384, right=16384, bottom=16384,
                                           feathering=0)


# ---- VAEEncodeForInpaint ----

def test_vae_encode_for_inpaint_crops_greys_and_grows(tiny):
    from nodes.diffusion.image_nodes import VAEEncode

    _model, _clip, vae = tiny
    pixels = _image(61, 70)          # 61 % 8 = 5 → 2 rows cut at the top; 70 % 8 = 6 → 3 columns at the left
    mask = torch.zeros(1, 61, 70)
    mask[0, 22:30, 33:41] = 1.0      # rows 20..27, columns 30..37 after the crop
    latent, = VAEEncodeForInpaint().encode(vae, pixels, mask, grow_mask_by=6)
    assert latent["samples"].shape == (1, 4, 7, 8)
    noise_mask = latent["noise_mask"]
    assert noise_mask.shape == (1, 1, 56, 64)
    # a 6x6 box with padding 3 grows the region 2 pixels up/left and 3 down/right
    expected = torch.zeros(1, 1, 56, 64)
    expected[0, 0, 18:31, 28:41] = 1.0
    assert torch.equal(noise_mask, expected)
    greyed = pixels[:, 2:58, 3:67].clone()
    greyed[:, 20:28, 30:38] = 0.5    # the mask itself (not the grown one) is greyed out
    assert torch.allclose(latent["samples"], VAEEncode().encode(vae, greyed)[0]["samples"], atol=1e-6)
    ungrown, = VAEEncodeForInpaint().encode(vae, pixels, mask, grow_mask_by=0)
    assert torch.equal(ungrown["noise_mask"][0, 0, 20:28, 30:38], torch.ones(8, 8))
    assert float(ungrown["noise_mask"].sum()) == 64


def test_vae_encode_for_inpaint_rejects_bad_masks(tiny):
    vae = tiny[2]
    with pytest.raises(BadRequest, match="mask batch"):
        VAEEncodeForInpaint().encode(vae, _image(16, 16).repeat(2, 1, 1, 1), torch.zeros(3, 16, 16))
    with pytest.raises(BadRequest, match="smaller than 8"):
        VAEEncodeForInpaint().encode(vae, _image(4, 16), torch.zeros(1, 4, 16))
    with pytest.raises(BadRequest, match="MASK"):
        SetLatentNoiseMask().set_mask({"samples": torch.zeros(1, 4, 2, 2)}, "not a mask")


# ---- SetLatentNoiseMask, InpaintModelConditioning ----

def test_set_latent_noise_mask_keeps_the_latent():
    latent = {"samples": torch.randn(2, 4, 8, 8), "batch_index": [0, 1]}
    out, = SetLatentNoiseMask().set_mask(latent, torch.ones(32, 48))
    assert out["noise_mask"].shape == (1, 1, 32, 48)
    assert out["samples"] is latent["samples"] and out["batch_index"] == [0, 1]
    assert "noise_mask" not in latent


def test_inpaint_model_conditioning(tiny):
    from nodes.diffusion.image_nodes import VAEEncode

    vae = tiny[2]
    pixels = _image(52, 64)          # 52 % 8 = 4 → 2 rows cut at the top
    mask = torch.zeros(1, 26, 32)    # half resolution: bilinear up to the image
    mask[0, 5:10, 4:12] = 1.0
    positive, negative = [[torch.ones(1, 77, 64), {"pooled_output": None}]], _cond()
    pos, neg, latent = InpaintModelConditioning().encode(positive, negative, pixels, vae, mask, noise_mask=True)
    full_mask = torch.nn.functional.interpolate(mask.reshape(1, 1, 26, 32), size=(52, 64), mode="bilinear")
    full_mask = full_mask[:, :, 2:50]
    for out in (pos, neg):
        assert torch.equal(out[0][1]["concat_mask"], full_mask)
        assert out[0][1]["concat_latent_image"].shape == (1, 4, 6, 8)
    assert pos[0][0] is positive[0][0] and "pooled_output" in pos[0][1]
    assert "concat_mask" not in positive[0][1] and "concat_mask" not in negative[0][1]
    greyed = pixels[:, 2:50].clone()
    greyed[:, :, :, :3] = (greyed - 0.5) * (1.0 - full_mask.round()).squeeze(1).unsqueeze(-1) + 0.5
    assert torch.allclose(pos[0][1]["concat_latent_image"], VAEEncode().encode(vae, greyed)[0]["samples"],
                          atol=1e-6)
    assert torch.allclose(latent["samples"], VAEEncode().encode(vae, pixels[:, 2:50])[0]["samples"], atol=1e-6)
    assert torch.equal(latent["noise_mask"], full_mask)
    _pos, _neg, plain = InpaintModelConditioning().encode(positive, negative, pixels, vae, mask, noise_mask=False)
    assert "noise_mask" not in plain


# ---- KSampler with a noise mask ----

def _masked_latent(seed: int = 3):
    samples = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))
    mask = torch.zeros(1, 64, 64)
    mask[0, 16:40, 24:56] = 1.0      # latent rows 2..4, columns 3..6: aligned to the 8-pixel grid
    latent_mask = torch.zeros(1, 4, 8, 8, dtype=torch.bool)
    latent_mask[:, :, 2:5, 3:7] = True
    return {"samples": samples, "noise_mask": mask.reshape(1, 1, 64, 64)}, latent_mask


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m", "euler_ancestral", "uni_pc"])
def test_ksampler_redraws_only_inside_the_noise_mask(tiny, sampler_name):
    from nodes.diffusion.nodes import KSampler

    model = tiny[0]
    latent, inside = _masked_latent()
    out, = KSampler().sample(model, 7, 3, 5.0, sampler_name, "normal", _cond(1), _cond(2), latent, 1.0)
    result, original = out["samples"], latent["samples"]
    assert out["noise_mask"] is latent["noise_mask"]
    # UniPC ends at sigma 0.001 rather than 0 (as ComfyUI's does), so outside the mask it is the original
    # to within that last bit of noise; ComfyUI does not paste the original back after sampling
    tolerance = 5e-3 if sampler_name == "uni_pc" else 1e-4
    assert float((result[~inside] - original[~inside]).abs().max()) < tolerance
    assert float((result[inside] - original[inside]).abs().mean()) > 0.05
    unmasked, = KSampler().sample(model, 7, 3, 5.0, sampler_name, "normal", _cond(1), _cond(2),
                                  {"samples": original}, 1.0)
    assert float((unmasked["samples"][~inside] - original[~inside]).abs().mean()) > 0.05


@pytest.mark.parametrize("sampler_name", ["euler", "lms"])
def test_ksampler_advanced_with_a_noise_mask(tiny, sampler_name):
    from nodes.diffusion.nodes import KSamplerAdvanced

    latent, inside = _masked_latent(seed=4)
    out, = KSamplerAdvanced().sample(tiny[0], "enable", 9, 6, 4.0, sampler_name, "karras", _cond(1), _cond(2),
                                     latent, 2, 6, "disable")
    result, original = out["samples"], latent["samples"]
    assert torch.allclose(result[~inside], original[~inside], atol=1e-4)
    assert float((result[inside] - original[inside]).abs().mean()) > 0.05


def test_a_noise_mask_with_partial_values_blends():
    """A soft mask keeps a proportion of the original (KSamplerX0Inpaint's blend is linear in the mask)."""
    from nodes.diffusion.sampling import _latent_noise_mask, _masked_denoiser

    latent = {"samples": torch.zeros(1, 4, 2, 2), "noise_mask": torch.full((1, 16, 16), 0.25)}
    mask = _latent_noise_mask(latent, latent["samples"], torch)
    assert mask.shape == (1, 4, 2, 2) and torch.allclose(mask, torch.full_like(mask, 0.25))
    original = torch.full((1, 4, 2, 2), 2.0)
    seen = {}

    def model(x, sigma):
        seen["x"] = x
        return torch.full_like(x, 10.0)

    out = _masked_denoiser(model, mask, original, torch.ones_like(original))(torch.zeros_like(original), 3.0)
    assert torch.allclose(seen["x"], torch.full_like(original, 0.75 * (2.0 + 3.0)))
    assert torch.allclose(out, torch.full_like(original, 0.25 * 10.0 + 0.75 * 2.0))


# ---- a 9-channel inpainting UNet ----

def _inpainting_model(tiny):
    from diffusers import UNet2DConditionModel

    from nodes.diffusion.models import DiffusionModel
    from nodes.diffusion.tiny import UNET_CONFIG

    base = tiny[0]
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**UNET_CONFIG, "in_channels": 9}).eval()
    seen: list = []
    unet.conv_in.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    return DiffusionModel(unet, base.family, base.prediction_type, base.scheduler_config, "cpu", torch.float32), seen


@pytest.mark.parametrize("sampler_name", ["euler", "uni_pc"])
def test_inpainting_unet_gets_mask_and_masked_latent(tiny, sampler_name):
    from nodes.diffusion.sampling import sample

    model, seen = _inpainting_model(tiny)
    pixels, mask = _image(64, 64, seed=5), torch.zeros(1, 64, 64)
    mask[0, 16:40, 24:56] = 1.0
    pos, neg, latent = InpaintModelConditioning().encode(_cond(1), _cond(2), pixels, tiny[2], mask, True)
    out = sample(model, 1, 2, 3.0, sampler_name, "normal", pos, neg, latent)
    assert out["samples"].shape == (1, 4, 8, 8)
    assert seen and all(x.shape == (2, 9, 8, 8) for x in seen)  # [uncond, cond] x (4 latent + 1 mask + 4)
    latent_mask = torch.zeros(8, 8)
    latent_mask[2:5, 3:7] = 1.0
    for x in seen:
        assert torch.equal(x[:, 4], latent_mask.expand(2, 8, 8))
        assert torch.allclose(x[:, 5:], pos[0][1]["concat_latent_image"].expand(2, -1, -1, -1), atol=1e-6)


def test_inpainting_unet_without_a_mask_gets_comfyuis_blank(tiny):
    from nodes.diffusion.sampling import BLANK_INPAINT_LATENT, sample

    model, seen = _inpainting_model(tiny)
    sample(model, 1, 1, 1.0, "euler", "normal", _cond(1), _cond(2), {"samples": torch.zeros(1, 4, 8, 8)})
    assert seen[0].shape == (1, 9, 8, 8)
    assert torch.equal(seen[0][:, 4], torch.ones(1, 8, 8))
    for channel, value in enumerate(BLANK_INPAINT_LATENT):
        assert torch.allclose(seen[0][:, 5 + channel], torch.full((1, 8, 8), value))


# ---- planned end to end ----

def _plan_and_run(request: str, registry, expected: set[str]):
    """Plan with the offline planner, check the nodes, run it (2 steps) and return (workflow, outputs)."""
    from agent.planner import plan

    result = plan(request, registry=registry)
    assert result.status == "valid", (result.errors, result.question)
    workflow = result.workflow
    assert expected <= {node["class_type"] for node in workflow.values()}
    for node in workflow.values():  # a few steps keep the CPU run short
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 2
    checked = validate(workflow, registry)
    assert checked.valid, [str(e) for e in checked.errors]
    out = Executor(registry).execute(checked.plan)
    assert out.status == "success", out.error
    return workflow, out


def _only(workflow: dict, class_type: str) -> str:
    [node_id] = [k for k, n in workflow.items() if n["class_type"] == class_type]
    return node_id


def _assert_kept_outside(workflow: dict, out, latent_size: tuple[int, int]) -> None:
    """The sampled latent equals the encoded one wherever the noise mask is 0 at latent resolution, and
    differs where it is 1."""
    encoded = out.output_value(_only(workflow, "VAEEncodeForInpaint"))
    keep = torch.nn.functional.interpolate(encoded["noise_mask"], size=latent_size, mode="bilinear")[0, 0] == 0
    before, after = encoded["samples"][0], out.output_value(_only(workflow, "KSampler"))["samples"][0]
    assert keep.any() and (~keep).any()
    assert torch.allclose(after[:, keep], before[:, keep], atol=1e-4)
    assert not torch.allclose(after[:, ~keep], before[:, ~keep], atol=1e-2)


@pytest.mark.slow
def test_offline_planned_inpaint_runs_on_the_tiny_checkpoint(models_root, isolated_folders, monkeypatch, registry):
    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(models_root))
    picture = Image.new("RGBA", (64, 48), (40, 120, 200, 255))
    for x in range(16, 40):
        for y in range(8, 32):
            picture.putpixel((x, y), (40, 120, 200, 0))  # transparent = masked, ComfyUI's mask-editor convention
    picture.save(isolated_folders / "input" / "photo.png")
    workflow, out = _plan_and_run("inpaint photo.png with a red fox", registry,
                                  {"LoadImage", "VAEEncodeForInpaint", "KSampler", "CheckpointLoaderSimple"})
    encoded = out.output_value(_only(workflow, "VAEEncodeForInpaint"))
    assert encoded["noise_mask"].shape == (1, 1, 48, 64) and float(encoded["noise_mask"].sum()) > 24 * 24
    _assert_kept_outside(workflow, out, (6, 8))
    assert out.outputs[_only(workflow, "SaveImage")]["images"]


@pytest.mark.slow
def test_offline_planned_outpaint_runs_on_the_tiny_checkpoint(models_root, isolated_folders, monkeypatch,
                                                               registry):
    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(models_root))
    Image.new("RGB", (64, 48), (200, 160, 40)).save(isolated_folders / "input" / "photo.png")
    workflow, out = _plan_and_run("extend photo.png to the left by 64 pixels", registry,
                                  {"ImagePadForOutpaint", "VAEEncodeForInpaint", "KSampler"})
    padded, mask = out.output_value(_only(workflow, "ImagePadForOutpaint"), 0), \
        out.output_value(_only(workflow, "ImagePadForOutpaint"), 1)
    assert padded.shape == (1, 48, 128, 3) and torch.all(padded[:, :, :64] == 0.5)
    assert torch.all(mask[:, :, :64] == 1) and torch.all(mask[:, :, 64:] == 0)  # 48 < 2 x 40: no feathering
    _assert_kept_outside(workflow, out, (6, 16))
    [image] = out.outputs[_only(workflow, "SaveImage")]["images"]
    with Image.open(isolated_folders / "output" / image["subfolder"] / image["filename"]) as saved:
        assert saved.size == (128, 48)


@pytest.mark.parametrize(("sampler_name", "noise_seed"), [("euler", 7), ("ddim", 8)])
def test_ddim_renoises_the_kept_part_from_seed_plus_one(tiny, monkeypatch, sampler_name, noise_seed):
    """ComfyUI's ddim is euler with inpaint_options random: KSamplerX0Inpaint noises the unmasked original with
    a fresh draw from seed + 1 instead of the sampling noise."""
    from nodes.diffusion import sampling
    from nodes.diffusion.nodes import KSampler

    seen = {}
    real = sampling._masked_denoiser

    def spy(denoise_fn, mask, original, noise):
        seen["noise"] = noise.cpu()
        return real(denoise_fn, mask, original, noise)

    monkeypatch.setattr(sampling, "_masked_denoiser", spy)
    latent, _ = _masked_latent()
    KSampler().sample(tiny[0], 7, 2, 5.0, sampler_name, "normal", _cond(1), _cond(2), latent, 1.0)
    expected = torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(noise_seed))
    assert torch.equal(seen["noise"], expected)
