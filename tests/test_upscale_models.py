"""UpscaleModelLoader and ImageUpscaleWithModel on spandrel, with tiny ESRGAN (RRDBNet) files the tests write."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # torch: real spandrel models through the real loader
needs_spandrel = pytest.mark.skipif(find_spec("spandrel") is None,
                                    reason="spandrel is not installed (pip install --no-deps spandrel einops)")

from PIL import Image  # noqa: E402

from compiler import validate  # noqa: E402
from engine import Executor  # noqa: E402
from nodes.diffusion import upscale_models as um  # noqa: E402
from nodes.diffusion.models import pick_device  # noqa: E402
from nodes.diffusion.upscale_models import ImageUpscaleWithModel, UpscaleModelLoader  # noqa: E402

# On the CPU the convolutions are exact float32; a CUDA device (NODEWEAVER_DEVICE=cuda, the GPU check) runs
# them in TF32, as ComfyUI does by torch's defaults, which is good to about 1e-3
ATOL = 1e-6 if pick_device() == "cpu" else 5e-3

NF, GC = 16, 32  # filters and growth channels (ESRGAN's real ones are 64 and 32)


def esrgan_state(*, blocks: int = 1, seed: int = 0, noise: float = 0.3) -> dict:
    """A 4x RRDBNet state dict with Real-ESRGAN's key names (conv_first, body.N.rdbM.convK, conv_up1 ...).

    With noise 0 the network is exactly a nearest-neighbour 4x upscale for pixels in [0, 1]: channel
    pass-through kernels on the main path and zero residual branches. Noise adds random weights everywhere, so
    the output follows the picture but every layer (the dense blocks too) shapes it.
    """
    gen = torch.Generator().manual_seed(seed)

    def conv(out_c: int, in_c: int, ident: bool = False) -> dict:
        weight = torch.randn(out_c, in_c, 3, 3, generator=gen) * (noise / (in_c * 9) ** 0.5)
        if ident:
            for c in range(min(out_c, in_c)):
                weight[c, c, 1, 1] += 1.0
        return {"weight": weight, "bias": torch.zeros(out_c)}

    layers = {"conv_first": conv(NF, 3, True)}
    for b in range(blocks):
        for r in range(1, 4):
            for k in range(1, 6):
                out_c = NF if k == 5 else GC
                layers[f"body.{b}.rdb{r}.conv{k}"] = conv(out_c, NF + (k - 1) * GC)
    layers.update({"conv_body": conv(NF, NF), "conv_up1": conv(NF, NF, True), "conv_up2": conv(NF, NF, True),
                   "conv_hr": conv(NF, NF, True), "conv_last": conv(3, NF, True)})
    return {f"{name}.{part}": tensor for name, params in layers.items() for part, tensor in params.items()}


def write_model(models_root: Path, name: str, state: dict) -> Path:
    folder = models_root / "upscale_models"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path


@pytest.fixture
def models_root(isolated_folders) -> Path:
    root = isolated_folders / "models"
    write_model(root, "tiny-esrgan-x4.pth", esrgan_state(seed=1))
    write_model(root, "nearest-x4.safetensors", esrgan_state(noise=0.0))
    return root


def pixels(batch: int, height: int, width: int, seed: int = 0):
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def test_schemas_are_comfyuis(registry, catalog_data) -> None:
    ours = registry.object_info()
    for name in ("UpscaleModelLoader", "ImageUpscaleWithModel"):
        for field in ("input_order", "output", "output_name", "output_is_list", "display_name", "category",
                      "output_node"):
            assert ours[name][field] == catalog_data[name][field], (name, field)
    assert registry.get_class("ImageUpscaleWithModel").USES_GPU


@needs_spandrel
def test_loader_lists_and_loads_through_spandrel(models_root: Path) -> None:
    choices = UpscaleModelLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert choices == ["nearest-x4.safetensors", "tiny-esrgan-x4.pth"]
    (model,) = UpscaleModelLoader().load_model("tiny-esrgan-x4.pth")
    spandrel = um.import_spandrel()
    assert isinstance(model, spandrel.ImageModelDescriptor)
    assert model.architecture.id == "ESRGAN" and model.scale == 4 and model.input_channels == 3
    assert not model.model.training
    (again,) = UpscaleModelLoader().load_model("tiny-esrgan-x4.pth")
    assert again is model  # one load per process, through the model cache


@needs_spandrel
def test_nearest_model_upscales_exactly_by_four(models_root: Path) -> None:
    (model,) = UpscaleModelLoader().load_model("nearest-x4.safetensors")
    image = pixels(2, 20, 28)
    (out,) = ImageUpscaleWithModel().upscale(model, image)
    assert tuple(out.shape) == (2, 80, 112, 3) and out.dtype == torch.float32
    expected = image.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    assert torch.allclose(out, expected, atol=ATOL)


@needs_spandrel
def test_random_model_output_is_sane(models_root: Path) -> None:
    (model,) = UpscaleModelLoader().load_model("tiny-esrgan-x4.pth")
    image = torch.cat([pixels(1, 16, 24, seed=2), pixels(1, 16, 24, seed=2), pixels(1, 16, 24, seed=3)])
    (out,) = ImageUpscaleWithModel().upscale(model, image)
    assert tuple(out.shape) == (3, 64, 96, 3)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    nearest = image.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)
    assert out.std() > 0.1  # not a constant picture
    assert torch.corrcoef(torch.stack([out.flatten(), nearest.flatten()]))[0, 1] > 0.8  # it follows the input
    assert (out - nearest).abs().mean() > 0.05  # and the random layers change it
    assert torch.allclose(out[0], out[1], atol=ATOL) and not torch.allclose(out[0], out[2], atol=ATOL)
    direct = model(image[:1].movedim(-1, 1).to(model.device)).movedim(1, -1).cpu()  # spandrel's own call
    assert torch.allclose(out[:1], direct, atol=ATOL)


@needs_spandrel
# Measured for the random model: max 0.048, mean 0.0021 (without the feather: max 0.29, mean 0.010).
@pytest.mark.parametrize("name, max_diff, mean_diff", [("nearest-x4.safetensors", 1e-6, 1e-7),
                                                       ("tiny-esrgan-x4.pth", 0.06, 0.004)])
def test_tiling_matches_one_pass(models_root: Path, name: str, max_diff: float, mean_diff: float) -> None:
    (model,) = UpscaleModelLoader().load_model(name)
    image = pixels(1, 45, 61, seed=4)
    (whole,) = ImageUpscaleWithModel().upscale(model, image)  # fits in one 512 tile
    tiled = um.upscale_image(model, image, tile=24, overlap=8)  # 3 x 4 tiles with a tiny tile
    assert um.tile_count(61, 45, 24, 8) == 12
    assert tiled.shape == whole.shape == (1, 180, 244, 3)
    assert (tiled - whole).abs().max() <= max_diff
    assert (tiled - whole).abs().mean() <= mean_diff


@needs_spandrel
def test_out_of_memory_halves_the_tile(models_root: Path, monkeypatch) -> None:
    (model,) = UpscaleModelLoader().load_model("nearest-x4.safetensors")
    real = um.tiled_scale
    tiles: list[int] = []

    def tight_memory(images, function, *, tile, **kwargs):
        tiles.append(tile)
        if tile > 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(images, function, tile=tile, **kwargs)

    monkeypatch.setattr(um, "tiled_scale", tight_memory)
    monkeypatch.setattr(um, "MIN_TILE", 16)
    image = pixels(1, 40, 40, seed=5)
    out = um.upscale_image(model, image, tile=64, overlap=4)
    assert tiles == [64, 32, 16]
    assert torch.allclose(out, image.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2), atol=ATOL)
    monkeypatch.setattr(um, "MIN_TILE", 128)
    with pytest.raises(RuntimeError, match="out of memory"):
        um.upscale_image(model, image, tile=128, overlap=4)


@needs_spandrel
def test_workflow_upscales_a_loaded_image(models_root: Path, isolated_folders: Path, registry) -> None:
    Image.new("RGB", (24, 18), (200, 30, 30)).save(isolated_folders / "input" / "small.png")
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "nearest-x4.safetensors"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"filename_prefix": "up", "images": ["3", 0]}},
    }
    result = validate(workflow, registry)
    assert result.valid, [str(e) for e in result.errors]
    out = Executor(registry).execute(result.plan)
    assert out.status == "success", out.error
    (info,) = out.outputs["4"]["images"]
    with Image.open(isolated_folders / "output" / info["subfolder"] / info["filename"]) as saved:
        assert saved.size == (96, 72)
        red, green, blue = saved.convert("RGB").getpixel((50, 40))
        # exact on the CPU; TF32 on a GPU may land a hair under 200/255, which 8-bit truncation makes 199
        assert (red, green, blue) == (200, 30, 30) or (ATOL > 1e-6 and abs(red - 200) + abs(green - 30)
                                                         + abs(blue - 30) <= 3)


@needs_spandrel
def test_bad_files_are_clear_errors(models_root: Path) -> None:
    write_model(models_root, "not-esrgan.safetensors", {"encoder.weight": torch.zeros(4, 4)})
    (models_root / "upscale_models" / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(um.UpscaleModelError, match="not an upscale model architecture spandrel recognises"):
        UpscaleModelLoader().load_model("not-esrgan.safetensors")
    with pytest.raises(um.UpscaleModelError, match="cannot read upscale model garbage.pth"):
        UpscaleModelLoader().load_model("garbage.pth")
    with pytest.raises(um.UpscaleModelError, match="'absent.pth' not found"):
        UpscaleModelLoader().load_model("absent.pth")
    (model,) = UpscaleModelLoader().load_model("nearest-x4.safetensors")
    with pytest.raises(um.BadRequest, match="takes 3-channel images; this image has 4"):
        ImageUpscaleWithModel().upscale(model, torch.rand(1, 8, 8, 4))


def test_missing_spandrel_says_what_to_install(monkeypatch) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "spandrel", raising=False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, package=None: None)
    with pytest.raises(um.MissingDependency, match="pip install --no-deps 'spandrel"):
        um.import_spandrel()
