"""ControlNet: a tiny random ControlNet (diffusers ControlNetModel with the tiny UNet's config) saved as a
diffusers folder and as an LDM-layout single file, loaded by the real loader, applied by ComfyUI's apply
nodes and used by KSampler; the Canny preprocessor on a synthetic square; the schemas against ComfyUI's."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import shared_catalog  # noqa: E402

from compiler import validate  # noqa: E402
from engine import Executor  # noqa: E402
from nodes.diffusion.controlnet import (  # noqa: E402
    Canny,
    ControlNet,
    ControlNetApply,
    ControlNetApplyAdvanced,
    ControlNetLoader,
    DiffControlNetLoader,
)
from nodes.diffusion.ldm_export import unet_to_ldm  # noqa: E402
from nodes.diffusion.models import CheckpointError  # noqa: E402
from nodes.diffusion.nodes import CLIPTextEncode, KSampler  # noqa: E402
from nodes.diffusion.tiny import (  # noqa: E402
    SDXL_UNET_CONFIG,
    TINY_NAME,
    UNET_CONFIG,
    write_tiny_checkpoint,
    write_tiny_sdxl_checkpoint,
)
from runtime.errors import BadRequest  # noqa: E402

CN_NODES = ("ControlNetLoader", "DiffControlNetLoader", "ControlNetApply", "ControlNetApplyAdvanced", "Canny")


def controlnet_to_ldm(state: dict, unet_config: dict) -> dict:
    """A diffusers ControlNetModel state dict in ComfyUI's single-file layout (control_model.*)."""
    shared = {k: v for k, v in state.items() if not k.startswith(("controlnet_", "add_embedding"))}
    out = {k.replace("model.diffusion_model.", "control_model."): v
           for k, v in unet_to_ldm(shared, unet_config).items()}
    for key, value in state.items():
        name = None
        if key.startswith("controlnet_down_blocks."):
            index, part = key.split(".")[1:]
            name = f"zero_convs.{index}.0.{part}"
        elif key.startswith("controlnet_mid_block."):
            name = "middle_block_out.0." + key.split(".")[-1]
        elif key.startswith("controlnet_cond_embedding.conv_in."):
            name = "input_hint_block.0." + key.split(".")[-1]
        elif key.startswith("controlnet_cond_embedding.blocks."):
            index, part = key.split(".")[2:]
            name = f"input_hint_block.{2 * (int(index) + 1)}.{part}"
        elif key.startswith("controlnet_cond_embedding.conv_out."):
            name = "input_hint_block.14." + key.split(".")[-1]
        elif key.startswith("add_embedding.linear_"):
            layer, part = key.split(".")[1:]
            name = f"label_emb.0.{0 if layer == 'linear_1' else 2}.{part}"
        if name is not None:
            out["control_model." + name] = value
    return out


def tiny_controlnet(unet_config: dict, seed: int = 3):
    """A ControlNetModel built from a tiny UNet; its zero convolutions get random weights so it acts."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(UNet2DConditionModel(**unet_config))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return net


def write_controlnet(models_root, name: str, unet_config: dict, seed: int = 3):
    from safetensors.torch import save_file

    net = tiny_controlnet(unet_config, seed)
    folder = models_root / "controlnet"
    net.save_pretrained(str(folder / name))
    state = {k: v.contiguous() for k, v in controlnet_to_ldm(net.state_dict(), unet_config).items()}
    save_file(state, str(folder / f"{name}.safetensors"))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / f"{name}-hf.safetensors"))
    return net


def _same_weights(*nets: ControlNet) -> bool:
    first = nets[0].weights.model.state_dict()
    return all(set(n.weights.model.state_dict()) == set(first) and
               all(torch.equal(v.float(), first[k].float()) for k, v in n.weights.model.state_dict().items())
               for n in nets[1:])


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_tiny_checkpoint(root, diffusers_folder=False)
    write_controlnet(root, "tiny-cn", UNET_CONFIG)
    return root


@pytest.fixture
def tiny(models_root, monkeypatch):
    from nodes.diffusion.models import load_checkpoint

    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(models_root))
    return load_checkpoint(models_root / "checkpoints" / f"{TINY_NAME}.safetensors")


def _cond(seed: int) -> list:
    return [[torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(seed)), {}]]


def _hint(seed: int = 5, size: int = 64):
    return torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(seed))


def _sample(model, positive, negative, sampler: str = "euler", steps: int = 3):
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    return KSampler().sample(model, 7, steps, 6.0, sampler, "normal", positive, negative, latent)[0]["samples"]


# ---- loading ----

def test_loader_lists_and_loads_both_layouts_to_the_same_weights(tiny):
    choices = ControlNetLoader.INPUT_TYPES()["required"]["control_net_name"][0]
    assert "tiny-cn.safetensors" in choices and "tiny-cn" in choices  # a diffusers folder is one choice
    single = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0]
    folder = ControlNetLoader().load_controlnet("tiny-cn")[0]
    renamed = ControlNetLoader().load_controlnet("tiny-cn-hf.safetensors")[0]  # diffusers names, one file
    assert isinstance(single, ControlNet) and single.weights.family == "sd1" == renamed.weights.family
    assert _same_weights(folder, single, renamed)
    assert list(single.weights.model.config.block_out_channels) == UNET_CONFIG["block_out_channels"]
    assert ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0].weights is single.weights  # cached


def test_loader_refuses_missing_and_foreign_files(tiny, models_root):
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="not found"):
        ControlNetLoader().load_controlnet("nope.safetensors")
    save_file({"something.weight": torch.zeros(2)}, str(models_root / "controlnet" / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a ControlNet"):
        ControlNetLoader().load_controlnet("foreign.safetensors")


def test_diff_controlnet_adds_the_models_unet_weights(tiny, models_root):
    from safetensors.torch import load_file, save_file

    model = tiny[0]
    state = load_file(str(models_root / "controlnet" / "tiny-cn.safetensors"))
    state["difference"] = torch.zeros(1)
    save_file(state, str(models_root / "controlnet" / "tiny-cn-diff.safetensors"))
    diff = DiffControlNetLoader().load_controlnet(model, "tiny-cn-diff.safetensors")[0].weights.model
    plain = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0].weights.model
    unet = model.unet.state_dict()
    key = "down_blocks.0.resnets.0.conv1.weight"
    expected = (plain.state_dict()[key].float() + unet[key].float()).to(diff.state_dict()[key].dtype)
    tolerance = 1e-6 if expected.dtype == torch.float32 else 2e-3  # fp16 on a GPU rounds the sum once more
    assert torch.allclose(diff.state_dict()[key].float(), expected.float(), atol=tolerance)
    hint_key = "controlnet_mid_block.weight"  # not a UNet weight: unchanged
    assert torch.equal(diff.state_dict()[hint_key], plain.state_dict()[hint_key])


# ---- apply nodes ----

def test_apply_advanced_puts_chained_controls_on_both_conditionings(tiny):
    net = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0]
    positive, negative = _cond(1), _cond(2)
    pos, neg = ControlNetApplyAdvanced().apply_controlnet(positive, negative, net, _hint(), 0.7, 0.2, 0.9)
    control = pos[0][1]["control"]
    assert control is neg[0][1]["control"] and control.previous is None
    assert (control.strength, control.start_percent, control.end_percent) == (0.7, 0.2, 0.9)
    assert control.hint.shape == (1, 3, 64, 64) and pos[0][1]["control_apply_to_uncond"] is False
    assert "control" not in positive[0][1]  # the inputs are not modified
    pos2, neg2 = ControlNetApplyAdvanced().apply_controlnet(pos, neg, net, _hint(6), 1.0, 0.0, 1.0)
    assert pos2[0][1]["control"].previous is control and neg2[0][1]["control"] is pos2[0][1]["control"]
    assert ControlNetApplyAdvanced().apply_controlnet(positive, negative, net, _hint(), 0.0, 0.0, 1.0) == \
        (positive, negative)
    [[_, extras]] = ControlNetApply().apply_controlnet(positive, net, _hint(), 0.5)[0]
    assert extras["control"].strength == 0.5 and extras["control_apply_to_uncond"] is True


def test_apply_rejects_bad_inputs(tiny):
    net = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0]
    with pytest.raises(BadRequest, match="IMAGE"):
        ControlNetApplyAdvanced().apply_controlnet(_cond(1), _cond(2), net, torch.zeros(64, 64), 1.0, 0.0, 1.0)
    with pytest.raises(BadRequest, match="control_net"):
        ControlNetApply().apply_controlnet(_cond(1), "not a controlnet", _hint(), 1.0)


# ---- sampling ----

@pytest.mark.parametrize("sampler", ["euler", "uni_pc"])
def test_ksampler_follows_the_control_within_its_window(tiny, sampler):
    model = tiny[0]
    net = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0]
    positive, negative = _cond(1), _cond(2)
    plain = _sample(model, positive, negative, sampler)

    def run(strength: float, start: float, end: float, hint=None):
        pos, neg = ControlNetApplyAdvanced().apply_controlnet(positive, negative, net,
                                                              _hint() if hint is None else hint,
                                                              strength, start, end)
        return _sample(model, pos, neg, sampler)

    full = run(1.0, 0.0, 1.0)
    assert not torch.allclose(full, plain, atol=1e-3)
    assert torch.equal(run(0.0, 0.0, 1.0), plain)
    assert torch.equal(run(1.0, 0.0, 0.0), plain)  # end_percent 0: never active
    late = run(1.0, 0.5, 1.0)  # only the second half of the schedule
    assert not torch.allclose(late, plain, atol=1e-3) and not torch.allclose(late, full, atol=1e-3)
    assert not torch.allclose(run(1.0, 0.0, 1.0, _hint(9)), full, atol=1e-3)  # the hint matters


def test_chained_controls_add_up_and_the_old_apply_reaches_the_negative(tiny):
    model = tiny[0]
    net = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0]
    positive, negative = _cond(1), _cond(2)
    apply = ControlNetApplyAdvanced().apply_controlnet
    one = _sample(model, *apply(positive, negative, net, _hint(), 1.0, 0.0, 1.0))
    half_twice = _sample(model, *apply(*apply(positive, negative, net, _hint(), 0.5, 0.0, 1.0),
                                       net, _hint(), 0.5, 0.0, 1.0))
    assert torch.allclose(one, half_twice, atol=1e-4)  # residuals are linear in strength and sum over the chain
    old = ControlNetApply().apply_controlnet(positive, net, _hint(), 1.0)[0]
    assert torch.allclose(_sample(model, old, negative), one, atol=1e-5)  # both halves guided, as Advanced
    only_positive = [[positive[0][0], {**old[0][1], "control_apply_to_uncond": False}]]
    assert not torch.allclose(_sample(model, only_positive, negative), one, atol=1e-3)


def test_workflow_with_controlnet_runs_through_the_executor(tiny, registry):
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"{TINY_NAME}.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "5": {"class_type": "Canny", "inputs": {"image": ["4", 0], "low_threshold": 0.4, "high_threshold": 0.8}},
        "6": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "tiny-cn.safetensors"}},
        "7": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["2", 0], "negative": ["3", 0], "control_net": ["6", 0], "image": ["5", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "8": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "9": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "seed": 1, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["7", 0], "negative": ["7", 1], "latent_image": ["8", 0], "denoise": 1.0}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "cn"}},
    }
    checked = validate(workflow, registry)
    assert checked.valid, [str(e) for e in checked.errors]
    out = Executor(registry).execute(checked.plan)
    assert out.status == "success", out.error
    assert out.output_value("9")["samples"].shape == (1, 4, 8, 8)
    assert isinstance(out.output_value("7", 0)[0][1]["control"], ControlNet)
    assert out.outputs["11"]["images"]


def test_sdxl_controlnet_single_file(models_root, monkeypatch):
    from nodes.diffusion.models import load_checkpoint

    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(models_root))
    path = write_tiny_sdxl_checkpoint(models_root)
    write_controlnet(models_root, "tiny-xl-cn", SDXL_UNET_CONFIG)
    model, clip, _vae = load_checkpoint(path)
    net = ControlNetLoader().load_controlnet("tiny-xl-cn.safetensors")[0]
    folder = ControlNetLoader().load_controlnet("tiny-xl-cn/diffusion_pytorch_model.safetensors")[0]
    renamed = ControlNetLoader().load_controlnet("tiny-xl-cn-hf.safetensors")[0]
    assert net.weights.family == folder.weights.family == renamed.weights.family == "sdxl"
    assert _same_weights(folder, net, renamed)
    positive = CLIPTextEncode().encode(clip, "a red fox")[0]
    negative = CLIPTextEncode().encode(clip, "blurry")[0]
    plain = _sample(model, positive, negative, steps=2)
    controlled = _sample(model, *ControlNetApplyAdvanced().apply_controlnet(positive, negative, net, _hint(),
                                                                           1.0, 0.0, 1.0), steps=2)
    assert not torch.allclose(plain, controlled, atol=1e-3)
    sd1_net = ControlNetLoader().load_controlnet("tiny-cn.safetensors")[0]
    with pytest.raises(BadRequest, match="ControlNet made for this checkpoint's family"):
        _sample(model, *ControlNetApplyAdvanced().apply_controlnet(positive, negative, sd1_net, _hint(), 1.0, 0.0,
                                                                   1.0), steps=1)


# ---- Canny ----

def _square(size: int = 48, low: int = 16, high: int = 32, value: float = 1.0):
    image = torch.zeros(1, size, size, 3)
    image[:, low:high, low:high, :] = value
    return image


def test_canny_finds_the_border_of_a_square():
    edges = Canny().detect_edge(_square(), 0.4, 0.8)[0]
    assert edges.shape == (1, 48, 48, 3) and torch.equal(edges[..., 0], edges[..., 2])
    on = edges[0, :, :, 0] > 0.5
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    ys, xs = torch.nonzero(on, as_tuple=True)
    assert len(ys) > 40  # the four sides
    near_border = ((ys >= 14) & (ys <= 33) & (xs >= 14) & (xs <= 33)) & \
        ~((ys >= 18) & (ys <= 29) & (xs >= 18) & (xs <= 29))
    assert bool(near_border.all())  # nothing inside the square or far outside it
    for side in (on[18:30, 14:18], on[18:30, 30:34], on[14:18, 18:30], on[30:34, 18:30]):
        assert int(side.sum()) >= 12  # every side is traced along its whole middle part
    assert int(on[18:30, 14:18].sum(dim=1).max()) == 1  # thin: one pixel across (non-maximum suppression)


def test_canny_thresholds_and_bad_input():
    faint = _square(value=0.15)  # a weak step: edges at a low threshold, none at a high one
    assert Canny().detect_edge(faint, 0.05, 0.1)[0].sum() > 0
    assert Canny().detect_edge(faint, 0.9, 0.99)[0].sum() == 0
    assert Canny().detect_edge(torch.full((1, 32, 32, 3), 0.5), 0.01, 0.02)[0].sum() == 0  # flat: no edges
    with pytest.raises(BadRequest, match="IMAGE"):
        Canny().detect_edge(torch.zeros(32, 32), 0.4, 0.8)
    with pytest.raises(BadRequest, match="low_threshold"):
        Canny().detect_edge(faint, 0.8, 0.4)


# ---- schemas ----

def test_schemas_are_comfyuis(registry):
    catalog = json.loads(shared_catalog().read_text(encoding="utf-8"))
    for name in CN_NODES:
        ours, theirs = registry.node_info(name), catalog[name]
        for key in ("input", "input_order", "output", "output_name", "output_is_list", "category", "display_name",
                    "deprecated"):
            if key == "display_name" and theirs[key] is None:  # a V3 node without one: the UI shows its name
                assert ours[key] in (None, name)
            elif key == "deprecated" and key in theirs:  # ours omits the flag when it is False
                assert bool(ours.get(key, False)) is theirs[key], name
            elif key in theirs:
                assert ours.get(key) == theirs[key], (name, key)
