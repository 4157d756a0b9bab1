"""The offline planner's chain builder: hand-made ParsedRequests → chained workflows that validate against the
ComfyUI 0.3.64 catalog, with models bound from the models folder and every stage accounted for."""

from __future__ import annotations

import copy

import pytest

from agent.offline.chain import build
from agent.offline.spec import ParsedRequest, Stage
from compiler import validate
from evals.environment import build_environment
from nodes.registry import NodeRegistry
from runtime import folders

MODELS = {
    "checkpoints": ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"],
    "loras": ["pixel-art.safetensors"],
    "upscale_models": ["4x-UltraSharp.pth"],
    "diffusion_models": ["wan2.1_t2v_1.3B_fp16.safetensors", "wan2.1_i2v_480p_14B_fp16.safetensors",
                         "wan2.1_flf2v_720p_14B_fp16.safetensors"],
    "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"],
    "vae": ["wan_2.1_vae.safetensors"],
}
EXTRA_MODELS = {"controlnet": ["control_v11p_sd15_canny.pth", "control_v11f1p_sd15_depth.pth"],
                "clip_vision": ["clip_vision_h.safetensors", "sigclip_vision_patch14_384.safetensors"],
                "style_models": ["flux1-redux-dev.safetensors"]}
INPUTS = ["photo.png", "mask.png", "first.png", "last.png", "clip.mp4"]

# loader inputs whose choices a ComfyUI lists from its folders: (class, input) → model kind (or "input")
FILLED = {("CheckpointLoaderSimple", "ckpt_name"): "checkpoints", ("ImageOnlyCheckpointLoader", "ckpt_name"):
          "checkpoints", ("UNETLoader", "unet_name"): "diffusion_models", ("CLIPLoader", "clip_name"):
          "text_encoders", ("DualCLIPLoader", "clip_name1"): "text_encoders", ("DualCLIPLoader", "clip_name2"):
          "text_encoders", ("VAELoader", "vae_name"): "vae", ("LoraLoader", "lora_name"): "loras",
          ("UpscaleModelLoader", "model_name"): "upscale_models", ("ControlNetLoader", "control_net_name"):
          "controlnet", ("CLIPVisionLoader", "clip_name"): "clip_vision", ("StyleModelLoader", "style_model_name"):
          "style_models", ("LoadImageMask", "image"): "input", ("LoadVideo", "file"): "input"}


def target(root, catalog_data: dict, models: dict | None = None) -> NodeRegistry:
    """Placeholder models and real input files in the test's folders, and the catalog of a ComfyUI that has
    them installed (its loaders list those files, as its /object_info would)."""
    spec = {**(MODELS if models is None else models), "input": INPUTS}
    build_environment(spec, root)
    extra = EXTRA_MODELS if models is None else {k: v for k, v in models.items() if k in EXTRA_MODELS}
    for kind, names in extra.items():  # kinds build_environment does not know
        (root / "models" / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / "models" / kind / name).write_bytes(b"placeholder")
    data = copy.deepcopy(catalog_data)
    for (cls, name), kind in FILLED.items():
        files = folders.input_files() if kind == "input" else folders.model_files(kind)
        spec_entry = data[cls]["input"]["required"][name]
        if isinstance(spec_entry[0], list):
            spec_entry[0] = files
        else:
            spec_entry[1]["options"] = files
    registry = NodeRegistry()
    registry.load_builtin_packs()
    registry.import_catalog(data, source="comfyui_object_info.json")
    return registry


@pytest.fixture
def comfy(isolated_folders, catalog_data) -> NodeRegistry:
    return target(isolated_folders, catalog_data)


def request(*stages: Stage, **settings) -> ParsedRequest:
    return ParsedRequest(text=" then ".join(s.text for s in stages), lang="en", stages=list(stages), **settings)


def classes(workflow: dict) -> list[str]:
    return [n["class_type"] for n in workflow.values()]


def only(workflow: dict, class_type: str) -> tuple[str, dict]:
    found = [(k, n["inputs"]) for k, n in workflow.items() if n["class_type"] == class_type]
    assert len(found) == 1, f"{class_type}: {len(found)} nodes"
    return found[0]


def of(workflow: dict, class_type: str) -> list[tuple[str, dict]]:
    return [(k, n["inputs"]) for k, n in workflow.items() if n["class_type"] == class_type]


def assert_valid(result, registry) -> None:
    assert result.workflow is not None
    checked = validate(result.workflow, registry)
    assert checked.valid, [e.message + " " + str(e.details) for e in checked.errors]
    assert result.question is None


# ---- image stages --------------------------------------------------------------------------------------------
def test_generate_binds_sd15_and_writes_no_text_into_the_negative(comfy):
    parsed = request(Stage("generate", "a shop sign that says OPEN", prompt="a shop sign with the text OPEN",
                           count=2), steps=25, seeds=[7])
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert only(wf, "CheckpointLoaderSimple")[1]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert only(wf, "EmptyLatentImage")[1] == {"width": 512, "height": 512, "batch_size": 2}
    sampler = only(wf, "KSampler")[1]
    assert (sampler["steps"], sampler["seed"], sampler["cfg"], sampler["denoise"]) == (25, 7, 7.0, 1.0)
    texts = {wf[sampler["positive"][0]]["inputs"]["text"], wf[sampler["negative"][0]]["inputs"]["text"]}
    assert texts == {"a shop sign with the text OPEN", "blurry, low quality"}
    save = only(wf, "SaveImage")[1]
    assert wf[save["images"][0]]["class_type"] == "VAEDecode"
    assert [c.kind for c in result.covered] == ["generate"] and not result.not_covered


def test_sdxl_hint_and_lora_use_one_loader_each(comfy):
    parsed = request(Stage("generate", "a castle", prompt="a castle", model_hint="sdxl", negative="people"),
                     lora="pixel-art.safetensors", lora_strength=0.8)
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    ckpt_id, ckpt = only(wf, "CheckpointLoaderSimple")
    assert ckpt["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    lora_id, lora = only(wf, "LoraLoader")
    assert lora["model"] == [ckpt_id, 0] and lora["strength_model"] == 0.8
    assert only(wf, "KSampler")[1]["model"] == [lora_id, 0]
    assert only(wf, "EmptyLatentImage")[1]["width"] == 1024
    negatives = [n["inputs"]["text"] for n in wf.values() if n.get("_meta", {}).get("title") == "Negative prompt"]
    assert negatives == ["people, blurry, low quality"]


def test_t2i_then_upscale_2x_with_the_installed_4x_model(comfy):
    parsed = request(Stage("generate", "a fox", prompt="a fox"), Stage("upscale", "upscale 2x", scale=2.0,
                                                                        with_model=True))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    loader_id, loader = only(wf, "UpscaleModelLoader")
    assert loader["model_name"] == "4x-UltraSharp.pth"
    up_id, up = only(wf, "ImageUpscaleWithModel")
    assert up["upscale_model"] == [loader_id, 0] and wf[up["image"][0]]["class_type"] == "VAEDecode"
    scale_id, scale = only(wf, "ImageScaleBy")
    assert scale["image"] == [up_id, 0] and scale["scale_by"] == 0.5
    assert only(wf, "SaveImage")[1]["images"] == [scale_id, 0]
    assert [c.kind for c in result.covered] == ["generate", "upscale"]
    assert "4x-UltraSharp.pth" in result.covered[1].what


def test_t2i_then_hires_samples_twice_from_one_loader(comfy):
    parsed = request(Stage("generate", "a city", prompt="a city"), Stage("hires", "hires fix", scale=2.0))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    first, second = of(wf, "KSampler")
    up_id, up = only(wf, "LatentUpscaleBy")
    assert up["samples"] == [first[0], 0] and up["scale_by"] == 2.0
    assert second[1]["latent_image"] == [up_id, 0] and second[1]["denoise"] == 0.5
    assert second[1]["positive"] == first[1]["positive"]
    assert len(of(wf, "CheckpointLoaderSimple")) == 1 and len(of(wf, "SaveImage")) == 1
    decode = wf[only(wf, "SaveImage")[1]["images"][0]]["inputs"]
    assert decode["samples"] == [second[0], 0]


def test_img2img_then_pixel_upscale_without_a_model_request(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["v1-5-pruned-emaonly.safetensors"]})
    parsed = request(Stage("restyle", "as a watercolor", prompt="a street", style="watercolor", image="photo.png"),
                     Stage("upscale", "upscale 3x", scale=3.0))
    result = build(parsed, registry=registry, answers={})
    assert_valid(result, registry)
    wf = result.workflow
    load_id, load = only(wf, "LoadImage")
    assert load["image"] == "photo.png"
    assert only(wf, "VAEEncode")[1]["pixels"] == [load_id, 0]
    sampler = only(wf, "KSampler")[1]
    assert 0.55 <= sampler["denoise"] <= 0.65
    assert wf[sampler["positive"][0]]["inputs"]["text"] == "a street, watercolor"
    scale = only(wf, "ImageScaleBy")[1]
    assert (scale["upscale_method"], scale["scale_by"]) == ("lanczos", 3.0)
    assert "UpscaleModelLoader" not in classes(wf)


def test_replace_uses_the_loaded_images_mask_then_upscales(comfy):
    parsed = request(Stage("replace", "replace the red car with a green car", image="photo.png",
                           target="the red car", replacement="a green car"), Stage("upscale", "upscale", scale=4.0))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    load_id, _ = only(wf, "LoadImage")
    inpaint = only(wf, "VAEEncodeForInpaint")[1]
    assert inpaint["pixels"] == [load_id, 0] and inpaint["mask"] == [load_id, 1] and inpaint["grow_mask_by"] > 0
    sampler = only(wf, "KSampler")[1]
    assert wf[sampler["positive"][0]]["inputs"]["text"] == "a green car"
    assert "ImageScaleBy" not in classes(wf)  # 4x is the installed model's own factor
    assert [c.kind for c in result.covered] == ["replace", "upscale"]


def test_remove_with_a_mask_file_prompts_the_background(comfy):
    parsed = request(Stage("remove", "remove the lamp post", image="photo.png", mask="mask.png",
                           target="lamp post"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    mask_id, mask = only(wf, "LoadImageMask")
    assert mask["image"] == "mask.png"
    assert only(wf, "VAEEncodeForInpaint")[1]["mask"] == [mask_id, 0]
    sampler = only(wf, "KSampler")[1]
    assert "background" in wf[sampler["positive"][0]]["inputs"]["text"]
    assert "lamp post" in wf[sampler["negative"][0]]["inputs"]["text"]


def test_outpaint_pads_the_sides_asked_for(comfy):
    parsed = request(Stage("outpaint", "extend to the left and top", image="photo.png", prompt="a meadow",
                           direction={"left": 200, "top": 128}))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    pad_id, pad = only(wf, "ImagePadForOutpaint")
    assert (pad["left"], pad["top"], pad["right"], pad["bottom"]) == (200, 128, 0, 0)
    inpaint = only(wf, "VAEEncodeForInpaint")[1]
    assert inpaint["pixels"] == [pad_id, 0] and inpaint["mask"] == [pad_id, 1]


def test_a_missing_image_is_asked_for_with_the_inputs_as_choices(comfy):
    result = build(request(Stage("img2img", "redraw holiday.png", prompt="a beach", image="holiday.png")),
                   registry=comfy, answers={})
    assert result.question is not None and result.question.slot == "image"
    assert set(result.question.choices) == {"photo.png", "mask.png", "first.png", "last.png"}
    answered = build(request(Stage("img2img", "redraw holiday.png", prompt="a beach", image="holiday.png")),
                     registry=comfy, answers={"image": "first.png"})
    assert_valid(answered, comfy)
    assert only(answered.workflow, "LoadImage")[1]["image"] == "first.png"


def test_missing_upscale_model_asks_and_still_drafts(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["v1-5-pruned-emaonly.safetensors"]})
    parsed = request(Stage("generate", "a fox", prompt="a fox"),
                     Stage("upscale", "upscale 4x with ESRGAN", scale=4.0, with_model=True))
    result = build(parsed, registry=registry, answers={})
    assert result.question is not None and result.question.slot == "upscale_model"
    assert result.question.download and result.question.choices == []
    assert result.question.download in result.question.text
    assert only(result.workflow, "UpscaleModelLoader")[1]["model_name"] == result.question.download
    assert "ImageUpscaleWithModel" in classes(result.workflow)


def test_without_the_catalog_missing_core_nodes_are_not_covered(registry):
    parsed = request(Stage("outpaint", "extend", image="photo.png", direction={"left": 64}))
    result = build(parsed, registry=registry, answers={})
    assert [c.kind for c in result.not_covered] == ["outpaint"]
    assert "no installed node provides outpainting" in result.not_covered[0].reason
    assert "ImagePadForOutpaint" in result.not_covered[0].suggestion


def test_not_provided_kinds_are_listed_with_what_would(comfy):
    parsed = request(Stage("t2v", "a wave", prompt="a wave"), Stage("interpolate", "smooth it to 60 fps"))
    result = build(parsed, registry=comfy, answers={})
    assert [c.kind for c in result.not_covered][-1] == "interpolate"
    assert "ComfyUI-Frame-Interpolation" in result.not_covered[-1].suggestion
