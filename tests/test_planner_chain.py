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
    # the built-in registry inpaints, outpaints and applies ControlNets now; video generation is still core-only
    parsed = request(Stage("i2v", "animate photo.png", image="photo.png", prompt="waves"))
    result = build(parsed, registry=registry, answers={})
    assert [c.kind for c in result.not_covered] == ["i2v"]
    assert "no installed node provides Wan i2v video generation" in result.not_covered[0].reason
    assert "WanImageToVideo" in result.not_covered[0].suggestion


def test_not_provided_kinds_are_listed_with_what_would(comfy):
    parsed = request(Stage("t2v", "a wave", prompt="a wave"), Stage("interpolate", "smooth it to 60 fps"))
    result = build(parsed, registry=comfy, answers={})
    assert [c.kind for c in result.covered] == ["t2v"] and [c.kind for c in result.not_covered] == ["interpolate"]
    assert "ComfyUI-Frame-Interpolation" in result.not_covered[0].suggestion
    assert result.not_covered[0].stage == 1 and result.not_covered[0].reason
    assert "SaveVideo" in classes(result.workflow)  # the covered part is still planned and saved


# ---- ControlNet and reference ----------------------------------------------------------------------------------
def test_controlnet_canny_preprocesses_and_guides_the_generation(comfy):
    parsed = request(Stage("controlnet", "follow the edges of photo.png", control="canny", image="photo.png"),
                     Stage("generate", "a robot", prompt="a robot"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    load_id, _ = only(wf, "LoadImage")
    canny_id, canny = only(wf, "Canny")
    assert canny["image"] == [load_id, 0]
    loader_id, loader = only(wf, "ControlNetLoader")
    assert loader["control_net_name"] == "control_v11p_sd15_canny.pth"
    apply_id, apply = only(wf, "ControlNetApplyAdvanced")
    assert apply["image"] == [canny_id, 0] and apply["control_net"] == [loader_id, 0]
    assert wf[apply["positive"][0]]["inputs"]["text"] == "a robot"
    sampler = only(wf, "KSampler")[1]
    assert (sampler["positive"], sampler["negative"]) == ([apply_id, 0], [apply_id, 1])
    assert [c.kind for c in result.covered] == ["controlnet", "generate"] and not result.not_covered


def test_depth_controlnet_without_a_map_lists_depth_estimation_as_not_covered(comfy):
    parsed = request(Stage("controlnet", "keep the depth of photo.png, a cabin in snow", prompt="a cabin in snow",
                           control="depth", image="photo.png"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    assert only(result.workflow, "ControlNetLoader")[1]["control_net_name"] == "control_v11f1p_sd15_depth.pth"
    assert "Canny" not in classes(result.workflow) and "KSampler" in classes(result.workflow)
    assert [c.kind for c in result.covered] == ["controlnet"]
    assert ["comfyui_controlnet_aux" in c.suggestion for c in result.not_covered] == [True]


def test_reference_uses_redux_on_the_positive_conditioning(comfy):
    parsed = request(Stage("reference", "in the style of photo.png", image="photo.png"),
                     Stage("generate", "a teapot", prompt="a teapot"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    apply_id, apply = only(wf, "StyleModelApply")
    assert wf[apply["clip_vision_output"][0]]["class_type"] == "CLIPVisionEncode"
    assert only(wf, "StyleModelLoader")[1]["style_model_name"] == "flux1-redux-dev.safetensors"
    assert only(wf, "KSampler")[1]["positive"] == [apply_id, 0]
    assert any("IPAdapter" in n for n in result.notes)


def test_edit_without_an_edit_model_falls_back_to_img2img_and_says_so(comfy):
    result = build(request(Stage("edit", "make the sky purple", prompt="make the sky purple", image="photo.png")),
                   registry=comfy, answers={})
    assert_valid(result, comfy)
    assert "VAEEncode" in classes(result.workflow) and "ReferenceLatent" not in classes(result.workflow)
    assert any("img2img" in n for n in result.notes)


# ---- video -----------------------------------------------------------------------------------------------------
def test_t2v_wan_binds_its_three_models_and_saves_a_video(comfy):
    parsed = request(Stage("t2v", "a wave breaking, 3 seconds", prompt="a wave breaking", seconds=3, fps=16))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert only(wf, "UNETLoader")[1]["unet_name"] == "wan2.1_t2v_1.3B_fp16.safetensors"
    assert only(wf, "CLIPLoader")[1] == {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "type": "wan"}
    assert only(wf, "VAELoader")[1]["vae_name"] == "wan_2.1_vae.safetensors"
    latent = only(wf, "EmptyHunyuanLatentVideo")[1]
    assert latent["length"] == 49 and (latent["length"] - 1) % 4 == 0
    video_id, video = only(wf, "CreateVideo")
    assert video["fps"] == 16.0 and wf[video["images"][0]]["class_type"] == "VAEDecode"
    assert only(wf, "SaveVideo")[1]["video"] == [video_id, 0]
    assert "SaveImage" not in classes(wf) and "CheckpointLoaderSimple" not in classes(wf)


def test_i2v_encodes_the_start_image_with_clip_vision(comfy):
    result = build(request(Stage("i2v", "animate photo.png", prompt="the leaves move", image="photo.png")),
                   registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert only(wf, "UNETLoader")[1]["unet_name"] == "wan2.1_i2v_480p_14B_fp16.safetensors"
    load_id, _ = only(wf, "LoadImage")
    node_id, node = only(wf, "WanImageToVideo")
    assert node["start_image"] == [load_id, 0]
    assert wf[node["clip_vision_output"][0]]["inputs"]["image"] == [load_id, 0]
    sampler = only(wf, "KSampler")[1]
    assert (sampler["positive"], sampler["negative"], sampler["latent_image"]) == ([node_id, 0], [node_id, 1],
                                                                                  [node_id, 2])


def test_flf2v_asks_for_a_missing_last_frame_then_builds(comfy):
    stage = Stage("flf2v", "from first.png to the last frame", prompt="a flower opens", image="first.png")
    asked = build(request(stage), registry=comfy, answers={})
    assert asked.question is not None and asked.question.slot == "end_image"
    result = build(request(stage), registry=comfy, answers={"end_image": "last.png"})
    assert_valid(result, comfy)
    wf = result.workflow
    node = only(wf, "WanFirstLastFrameToVideo")[1]
    assert wf[node["start_image"][0]]["inputs"]["image"] == "first.png"
    assert wf[node["end_image"][0]]["inputs"]["image"] == "last.png"
    assert len(of(wf, "CLIPVisionEncode")) == 2 and len(of(wf, "CLIPVisionLoader")) == 1


def test_t2i_then_i2v_animates_the_generated_picture(comfy):
    parsed = request(Stage("generate", "a lighthouse", prompt="a lighthouse at dusk"),
                     Stage("i2v", "then animate it", prompt="waves roll in", frames=33))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    node = only(wf, "WanImageToVideo")[1]
    assert wf[node["start_image"][0]]["class_type"] == "VAEDecode" and node["length"] == 33
    assert "LoadImage" not in classes(wf)
    # the picture asked for is saved too, not only the video made from it
    assert only(wf, "SaveImage")[1]["images"] == node["start_image"]
    assert len(of(wf, "SaveVideo")) == 1
    assert [c.kind for c in result.covered] == ["generate", "i2v"]


def test_upscaled_photo_then_i2v_saves_the_upscale_but_not_a_loaded_file(comfy):
    parsed = request(Stage("upscale", "upscale photo.png", image="photo.png", scale=4.0),
                     Stage("i2v", "then animate it", prompt="leaves move"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    up_id, _ = only(wf, "ImageUpscaleWithModel")
    assert only(wf, "SaveImage")[1]["images"] == [up_id, 0]
    plain = build(request(Stage("i2v", "animate photo.png", prompt="leaves move", image="photo.png")),
                  registry=comfy, answers={})
    assert_valid(plain, comfy)
    assert "SaveImage" not in classes(plain.workflow)  # the input file itself is not saved again


def test_v2v_uses_the_input_videos_frames_as_control(comfy):
    result = build(request(Stage("v2v", "restyle clip.mp4 as anime", prompt="anime style", video="clip.mp4")),
                   registry=comfy, answers={"video_model": "wan2.1_t2v_1.3B_fp16.safetensors"})
    assert_valid(result, comfy)
    wf = result.workflow
    parts_id, parts = only(wf, "GetVideoComponents")
    assert wf[parts["video"][0]]["inputs"]["file"] == "clip.mp4"
    vace_id, vace = only(wf, "WanVaceToVideo")
    assert vace["control_video"] == [parts_id, 0]
    assert only(wf, "TrimVideoLatent")[1]["trim_amount"] == [vace_id, 3]


def test_missing_video_model_asks_with_a_download_and_drafts(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["v1-5-pruned-emaonly.safetensors"]})
    result = build(request(Stage("t2v", "a wave", prompt="a wave")), registry=registry, answers={})
    slots = [q.slot for q in result.questions]
    assert slots[:3] == ["video_model", "text_encoder", "video_vae"]
    assert only(result.workflow, "UNETLoader")[1]["unet_name"] == result.questions[0].download
    assert "wan" in result.questions[0].download.lower()


# ---- chains, branches, text --------------------------------------------------------------------------------------
def test_two_branches_share_the_loaders_and_save_twice(comfy):
    parsed = request(Stage("generate", "a red fox", prompt="a red fox", branch=0),
                     Stage("generate", "a blue bird", prompt="a blue bird", branch=1),
                     Stage("upscale", "upscale the bird", scale=2.0, branch=1), seeds=[1, 2])
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert len(of(wf, "CheckpointLoaderSimple")) == 1 and len(of(wf, "SaveImage")) == 2
    assert sorted(s["seed"] for _, s in of(wf, "KSampler")) == [1, 2]
    negatives = [n for n in wf.values() if n.get("_meta", {}).get("title") == "Negative prompt"]
    assert len(negatives) == 1  # the same negative text is encoded once and shared
    saved = {wf[s["images"][0]]["class_type"] for _, s in of(wf, "SaveImage")}
    assert saved == {"VAEDecode", "ImageScaleBy"} or saved == {"VAEDecode", "ImageUpscaleWithModel"}


def test_an_llm_written_prompt_feeds_the_text_encoder_by_link(comfy):
    parsed = request(Stage("llm_write", "write a prompt about a travel poster", prompt="a travel poster of Kyoto"),
                     Stage("generate", "draw it", prompt="a travel poster"),
                     Stage("caption", "and a slogan"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    chats = of(wf, "LLMChat")
    assert len(chats) == 2
    sampler = only(wf, "KSampler")[1]
    assert wf[sampler["positive"][0]]["inputs"]["text"] == [chats[0][0], 0]
    assert only(wf, "SaveText")[1]["text"] == [chats[1][0], 0]
    assert [c.kind for c in result.covered] == ["llm_write", "generate", "caption"]


def test_translate_then_save_writes_a_text_file(comfy):
    parsed = ParsedRequest(text="把这段话翻译成英文并保存", lang="zh", stages=[
        Stage("translate", "把这段话翻译成英文", prompt="你好世界", language="English"), Stage("save", "并保存")])
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    chat_id, chat = only(result.workflow, "LLMChat")
    assert chat["provider"] == "dashscope" and "English" in chat["system_prompt"]
    assert only(result.workflow, "SaveText")[1]["text"] == [chat_id, 0]
    assert [c.kind for c in result.covered] == ["translate", "save"]


# ---- other model families, and questions --------------------------------------------------------------------------
def test_edit_with_an_installed_kontext_model_uses_reference_latent(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {
        "diffusion_models": ["flux1-dev-kontext_fp8_scaled.safetensors"],
        "text_encoders": ["clip_l.safetensors", "t5xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["ae.safetensors"]})
    result = build(request(Stage("edit", "add a hat", prompt="add a red hat to the dog", image="photo.png")),
                   registry=registry, answers={})
    assert_valid(result, registry)
    wf = result.workflow
    assert only(wf, "DualCLIPLoader")[1] == {"clip_name1": "clip_l.safetensors",
                                             "clip_name2": "t5xxl_fp8_e4m3fn_scaled.safetensors", "type": "flux"}
    encode_id, encode = only(wf, "VAEEncode")
    assert wf[encode["pixels"][0]]["class_type"] == "FluxKontextImageScale"
    assert only(wf, "ReferenceLatent")[1]["latent"] == [encode_id, 0]
    sampler = only(wf, "KSampler")[1]
    assert sampler["cfg"] == 1.0 and wf[sampler["positive"][0]]["class_type"] == "FluxGuidance"
    assert "CheckpointLoaderSimple" not in classes(wf) and result.stages_used == ["edit-kontext"]


def test_i2v_with_only_svd_installed_uses_svd(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["svd_xt.safetensors"]})
    result = build(request(Stage("i2v", "animate photo.png", image="photo.png", frames=25)),
                   registry=registry, answers={})
    assert_valid(result, registry)
    wf = result.workflow
    loader_id, _ = only(wf, "ImageOnlyCheckpointLoader")
    cond_id, cond = only(wf, "SVD_img2vid_Conditioning")
    assert cond["clip_vision"] == [loader_id, 1] and cond["video_frames"] == 25
    sampler = only(wf, "KSampler")[1]
    assert wf[sampler["model"][0]]["class_type"] == "VideoLinearCFGGuidance"
    assert sampler["latent_image"] == [cond_id, 2]


def test_t2v_with_ltxv_named_uses_ltxv(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["ltx-video-2b-v0.9.5.safetensors"],
                                                        "text_encoders": ["t5xxl_fp16.safetensors"]})
    result = build(request(Stage("t2v", "a cat walks, LTX", prompt="a cat walks", model_hint="ltxv", frames=50)),
                   registry=registry, answers={})
    assert_valid(result, registry)
    wf = result.workflow
    assert only(wf, "CLIPLoader")[1]["type"] == "ltxv"
    assert only(wf, "EmptyLTXVLatentVideo")[1]["length"] == 49
    cond_id, _ = only(wf, "LTXVConditioning")
    assert only(wf, "KSampler")[1]["positive"] == [cond_id, 0]


def test_no_checkpoint_asks_with_the_demo_choice_and_drafts(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {})
    result = build(request(Stage("generate", "a fox", prompt="a fox")), registry=registry, answers={})
    assert result.question.slot == "checkpoint" and result.question.choices == ["demo checkpoint"]
    assert only(result.workflow, "CheckpointLoaderSimple")[1]["ckpt_name"] == result.question.download


def test_several_seeds_sample_once_each_over_one_loader(comfy):
    parsed = request(Stage("generate", "文字海报", prompt="a poster with the words 开业大吉 in gold lettering"),
                     seeds=[3, 4, 5])
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert [s["seed"] for _, s in of(wf, "KSampler")] == [3, 4, 5]
    assert len(of(wf, "CheckpointLoaderSimple")) == 1 and len(of(wf, "SaveImage")) == 3
    assert all("text" not in n["inputs"]["text"] for n in wf.values()
               if n.get("_meta", {}).get("title") == "Negative prompt")


def test_hires_alone_generates_then_refines(comfy):
    result = build(request(Stage("hires", "a harbour, hires fix", prompt="a harbour")), registry=comfy, answers={})
    assert_valid(result, comfy)
    assert len(of(result.workflow, "KSampler")) == 2
    assert result.covered[0].what.startswith("hires fix") and len(result.covered[0].nodes) >= 6


def test_builtin_registry_plans_images_and_reports_video_as_not_covered(registry, isolated_folders):
    build_environment({"checkpoints": ["v1-5-pruned-emaonly.safetensors"]}, isolated_folders)
    parsed = request(Stage("generate", "a fox", prompt="a fox", branch=0),
                     Stage("t2v", "a wave", prompt="a wave", branch=1))
    result = build(parsed, registry=registry, answers={})
    assert_valid(result, registry)
    assert [c.kind for c in result.covered] == ["generate"]
    assert [c.kind for c in result.not_covered] == ["t2v"]
    assert "no installed node provides Wan t2v video generation" in result.not_covered[0].reason
    assert "UNETLoader" in result.not_covered[0].suggestion


# ---- round 2: loosely named LoRAs, fallbacks to installed models, steps no core node provides ---------------------
@pytest.mark.parametrize(("text", "wanted", "strength"), [
    ("a lighthouse with the watercolor LoRA at strength 0.7", "watercolor", 0.7),
    ("加上水彩LoRA,权重0.6,画一座小桥", "水彩", 0.6),
    ("a fox, Water-Color lora", "Water-Color", 1.0),
])
def test_a_loosely_named_installed_lora_is_loaded_with_its_strength(isolated_folders, catalog_data, text, wanted,
                                                                     strength):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["v1-5-pruned-emaonly.safetensors"],
                                                        "loras": ["watercolor_sd15.safetensors",
                                                                  "pixel-art-xl.safetensors"]})
    parsed = ParsedRequest(text=text, lang="en", stages=[Stage("generate", text, prompt="a lighthouse")],
                           lora_wanted=wanted)
    result = build(parsed, registry=registry, answers={})
    assert_valid(result, registry)
    lora_id, lora = only(result.workflow, "LoraLoader")
    assert (lora["lora_name"], lora["strength_model"], lora["strength_clip"]) == \
        ("watercolor_sd15.safetensors", strength, strength)
    assert only(result.workflow, "KSampler")[1]["model"] == [lora_id, 0]


def test_a_lora_name_matching_no_installed_file_is_still_asked(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["v1-5-pruned-emaonly.safetensors"],
                                                        "loras": ["watercolor_sd15.safetensors"]})
    parsed = request(Stage("generate", "a fox", prompt="a fox"), lora_wanted="ghibli")
    result = build(parsed, registry=registry, answers={})
    assert result.question is not None and result.question.slot == "lora"
    assert result.question.choices == ["watercolor_sd15.safetensors"]
    assert "LoraLoader" not in classes(result.workflow)


def test_v2v_without_a_vace_model_redraws_each_frame_at_the_videos_rate(comfy):
    result = build(request(Stage("v2v", "restyle clip.mp4 as claymation", prompt="claymation", video="clip.mp4")),
                   registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    parts_id, parts = only(wf, "GetVideoComponents")
    assert wf[parts["video"][0]]["inputs"]["file"] == "clip.mp4"
    encode_id, encode = only(wf, "VAEEncode")
    assert encode["pixels"] == [parts_id, 0]
    sampler = only(wf, "KSampler")[1]
    assert sampler["latent_image"] == [encode_id, 0] and 0 < sampler["denoise"] < 1
    assert wf[sampler["positive"][0]]["inputs"]["text"] == "claymation"
    video = only(wf, "CreateVideo")[1]
    assert video["fps"] == [parts_id, 2] and video["audio"] == [parts_id, 1]
    assert wf[video["images"][0]]["class_type"] == "VAEDecode"
    assert "WanVaceToVideo" not in classes(wf) and any("VACE" in n for n in result.notes)
    assert [c.kind for c in result.covered] == ["v2v"]


def test_flf2v_without_its_model_uses_the_installed_wan_i2v_model(isolated_folders, catalog_data):
    models = {k: [f for f in v if "flf2v" not in f] for k, v in {**MODELS, **EXTRA_MODELS}.items()}
    registry = target(isolated_folders, catalog_data, models)
    parsed = request(Stage("flf2v", "from first.png to last.png", prompt="a flower opens", image="first.png",
                           extra={"end_image": "last.png"}))
    result = build(parsed, registry=registry, answers={})
    assert_valid(result, registry)
    wf = result.workflow
    assert only(wf, "UNETLoader")[1]["unet_name"] == "wan2.1_i2v_480p_14B_fp16.safetensors"
    node = only(wf, "WanFirstLastFrameToVideo")[1]
    assert {wf[node[k][0]]["inputs"]["image"] for k in ("start_image", "end_image")} == {"first.png", "last.png"}
    assert any("first-last-frame" in n for n in result.notes)


def test_interpolation_alone_carries_the_video_through_and_reports_it(comfy):
    parsed = request(Stage("interpolate", "interpolate clip.mp4 to 60 fps", video="clip.mp4", fps=60.0))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    parts_id, _ = only(wf, "GetVideoComponents")
    assert only(wf, "CreateVideo")[1]["images"] == [parts_id, 0] and len(of(wf, "SaveVideo")) == 1
    assert [c.kind for c in result.not_covered] == ["interpolate"] and not result.covered
    assert "Frame-Interpolation" in result.not_covered[0].suggestion
    assert "unchanged" in result.summary


def test_a_video_then_interpolation_keeps_the_video_and_reports_the_step(comfy):
    parsed = request(Stage("generate", "a lighthouse", prompt="a lighthouse"), Stage("i2v", "animate it"),
                     Stage("interpolate", "interpolate to 60 fps", fps=60.0))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    assert [c.kind for c in result.covered] == ["generate", "i2v"]
    assert [c.kind for c in result.not_covered] == ["interpolate"]
    assert len(of(result.workflow, "SaveVideo")) == 1 and len(of(result.workflow, "SaveImage")) == 1


def test_lineart_guide_without_its_controlnet_uses_canny_edges(comfy):
    parsed = request(Stage("controlnet", "color the line art", prompt="a mech warrior", image="photo.png",
                           control="lineart"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    canny_id, canny = only(wf, "Canny")
    assert wf[canny["image"][0]]["inputs"]["image"] == "photo.png"
    assert only(wf, "ControlNetLoader")[1]["control_net_name"] == "control_v11p_sd15_canny.pth"
    assert only(wf, "ControlNetApplyAdvanced")[1]["image"] == [canny_id, 0]
    assert not result.not_covered and any("lineart" in n for n in result.notes)


def test_two_styles_of_one_photo_are_two_saved_branches_over_one_load(comfy):
    parsed = request(Stage("restyle", "as a watercolor", prompt="a street", style="watercolor", image="photo.png"),
                     Stage("restyle", "as an oil painting", prompt="a street", style="oil painting",
                           image="photo.png", branch=1))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert len(of(wf, "LoadImage")) == 1 and len(of(wf, "CheckpointLoaderSimple")) == 1
    saves = of(wf, "SaveImage")
    assert len(saves) == 2
    texts = set()
    for _, save in saves:
        sampler = wf[wf[save["images"][0]]["inputs"]["samples"][0]]["inputs"]
        texts.add(wf[sampler["positive"][0]]["inputs"]["text"])
    assert texts == {"a street, watercolor", "a street, oil painting"}


# ---- round 2 (issue 17) ------------------------------------------------------------------------------------------
def test_reference_without_a_style_model_starts_the_picture_and_says_so(isolated_folders, catalog_data):
    """No image-prompt model (no Redux, no ViT-bigG): the reference starts the picture (img2img at 0.8), with a
    note that says it is not a learned style transfer; nothing is dropped to words alone."""
    registry = target(isolated_folders, catalog_data, {**MODELS, "clip_vision": ["clip_vision_h.safetensors"]})
    parsed = request(Stage("reference", "a fox in the style of photo.png", prompt="a fox", image="photo.png"))
    result = build(parsed, registry=registry, answers={})
    assert_valid(result, registry)
    assert [c.kind for c in result.covered] == ["reference"] and not result.not_covered
    assert "StyleModelApply" not in classes(result.workflow)
    (_, sampler), = of(result.workflow, "KSampler")
    encode = result.workflow[sampler["latent_image"][0]]
    assert encode["class_type"] == "VAEEncode" and sampler["denoise"] == 0.8
    assert result.workflow[encode["inputs"]["pixels"][0]]["inputs"]["image"] == "photo.png"
    assert any("IPAdapter" in note for note in result.notes)
    assert any(n["inputs"].get("text") == "a fox" for n in result.workflow.values())


def test_reference_with_sdxl_and_the_bigg_vision_model_uses_unclip_conditioning(isolated_folders, catalog_data):
    registry = target(isolated_folders, catalog_data, {"checkpoints": ["sd_xl_base_1.0.safetensors"],
                                                       "clip_vision": ["clip_vision_g.safetensors"]})
    parsed = request(Stage("reference", "a fox in the style of photo.png", prompt="a fox", image="photo.png"))
    result = build(parsed, registry=registry, answers={})
    assert_valid(result, registry)
    wf = result.workflow
    unclip_id, unclip = only(wf, "unCLIPConditioning")
    assert wf[unclip["clip_vision_output"][0]]["class_type"] == "CLIPVisionEncode"
    assert only(wf, "CLIPVisionLoader")[1]["clip_name"] == "clip_vision_g.safetensors"
    assert only(wf, "KSampler")[1]["positive"] == [unclip_id, 0]
    assert [c.kind for c in result.covered] == ["reference"] and not result.not_covered


def test_an_llm_before_a_regex_answers_in_json_and_the_regex_reads_it(comfy):
    parsed = request(Stage("llm_write", "ask for JSON", prompt="a JSON list of three city names"),
                     Stage("regex", "extract the first city with a regex"))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    chat_id, chat = only(wf, "LLMChat")
    assert chat["json_output"] is True and "JSON" in chat["system_prompt"]
    regex_id, regex = only(wf, "RegexExtract")
    assert regex["string"] == [chat_id, 0]
    assert only(wf, "PreviewAny")[1]["source"] == [regex_id, 0]


def test_two_style_versions_of_one_input_load_it_once_and_save_each(comfy):
    parsed = request(Stage("restyle", "watercolor", prompt="watercolor", style="watercolor", image="photo.png"),
                     Stage("restyle", "oil", prompt="oil painting", style="oil painting", image="photo.png", branch=1))
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    wf = result.workflow
    assert len(of(wf, "LoadImage")) == 1 and len(of(wf, "KSampler")) == 2 and len(of(wf, "SaveImage")) == 2
    texts = {n["inputs"]["text"] for n in wf.values() if n["class_type"] == "CLIPTextEncode"}
    assert {"watercolor", "oil painting"} <= texts


@pytest.mark.parametrize("text", ["A rainy alley at night, then hires fix: upscale the latent by 2; refine at denoise 0.4",
                                  "雨夜的小巷,然后高清修复放大2倍,重绘幅度0.4"])
def test_a_hires_request_keeps_its_factor_and_denoise_from_words_to_nodes(comfy, text):
    from agent.offline.stages import read_request

    parsed = read_request(text, checkpoints=MODELS["checkpoints"], loras=[], inputs=INPUTS)
    result = build(parsed, registry=comfy, answers={})
    assert_valid(result, comfy)
    assert only(result.workflow, "LatentUpscaleBy")[1]["scale_by"] == 2.0
    assert sorted(n["denoise"] for _, n in of(result.workflow, "KSampler")) == [0.4, 1.0]


# ---- round 3 (issue 17): whole requests through plan(), in both languages ------------------------------------------
def _planned(text: str, registry: NodeRegistry):
    from agent.planner import plan

    result = plan(text, registry=registry)
    assert result.workflow, (result.status, result.summary)
    assert validate(result.workflow, registry).valid
    return result, result.workflow


@pytest.mark.parametrize("text", ["把 wide.png 扩成16:9的横图", "extend wide.png to 16:9"])
def test_outpaint_to_an_aspect_ratio_pads_from_the_input_size(comfy, isolated_folders, text):
    from PIL import Image

    Image.new("RGB", (640, 480)).save(isolated_folders / "input" / "wide.png")
    result, wf = _planned(text, comfy)
    _, pad = only(wf, "ImagePadForOutpaint")
    assert (pad["left"], pad["right"], pad["top"], pad["bottom"]) == (104, 104, 0, 0)  # 480·16/9 = 853 ≈ 640+208
    assert result.status == "valid"


def test_controlnet_with_a_reference_picture_reads_its_canny_thresholds(comfy):
    _, wf = _planned("ControlNet canny,参考图 photo.png,低阈值0.2高阈值0.6,画一座城堡", comfy)
    _, canny = only(wf, "Canny")
    assert (canny["low_threshold"], canny["high_threshold"]) == (0.2, 0.6)
    assert wf[canny["image"][0]]["inputs"]["image"] == "photo.png"
    assert only(wf, "ControlNetApplyAdvanced") and only(wf, "KSampler")


def test_a_depth_controlnet_and_a_style_reference_share_one_sampling(comfy):
    result, wf = _planned("用 photo.png 的深度图做ControlNet,再参考 first.png 的风格,画一个客厅", comfy)
    assert sorted(n["image"] for _, n in of(wf, "LoadImage")) == ["first.png", "photo.png"]
    _, apply = only(wf, "ControlNetApplyAdvanced")
    (sampler_id, sampler), = of(wf, "KSampler")
    assert sampler["positive"][0] in {k for k, n in wf.items() if n["class_type"] in ("ControlNetApplyAdvanced",
                                                                                       "StyleModelApply")}
    assert {c["kind"] for c in result.covered} == {"controlnet", "reference"}
    keys = [(c["stage"], c["kind"], c["what"]) for c in result.not_covered]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("text", ["photo.png 人脸修复加超分", "face restore and upscale photo.png"])
def test_an_unbuildable_face_restore_keeps_the_upscale(comfy, text):
    result, wf = _planned(text, comfy)
    assert result.status == "partial" and [c["kind"] for c in result.not_covered] == ["face_restore"]
    _, up = only(wf, "ImageUpscaleWithModel")
    assert wf[up["image"][0]]["inputs"]["image"] == "photo.png"


@pytest.mark.parametrize("text", ["把 photo.png 的背景抠掉,然后放大2倍", "remove the background of photo.png, then upscale it 2x"])
def test_background_removal_is_not_covered_and_the_upscale_needs_no_question(comfy, text):
    result, wf = _planned(text, comfy)
    assert result.status == "partial" and result.question is None
    assert [c["kind"] for c in result.not_covered] == ["remove_background"]
    assert "VAEEncode" not in classes(wf) and only(wf, "LoadImage")[1]["image"] == "photo.png"


def test_an_llm_prompt_then_chu_tu_links_the_text_into_the_picture(comfy):
    result, wf = _planned("先让大模型写一段雪山湖泊的提示词,再用它出图", comfy)
    chat, _ = only(wf, "LLMChat")
    assert any(n["class_type"] == "CLIPTextEncode" and n["inputs"]["text"] == [chat, 0] for n in wf.values())
    assert only(wf, "KSampler")


def test_an_erase_with_a_mask_file_paints_the_fill(comfy):
    _, wf = _planned("把photo.png里mask.png遮住的地方擦掉,补成草地", comfy)
    assert only(wf, "LoadImageMask")[1]["image"] == "mask.png" and only(wf, "VAEEncodeForInpaint")
    assert any(n["class_type"] == "CLIPTextEncode" and n["inputs"]["text"] == "草地" for n in wf.values())


# ---- round 4 (issue 17): gaps a second blind suite found ----------------------------------------------------------
UPSCALERS = {**MODELS, "upscale_models": ["4x-UltraSharp.pth", "RealESRGAN_x2plus.pth", "RealESRGAN_x4plus.pth"]}


@pytest.mark.parametrize("text,model,rescaled", [
    ("用RealESRGAN把photo.png放大4倍", "RealESRGAN_x4plus.pth", False),
    ("upscale photo.png 2x with RealESRGAN", "RealESRGAN_x2plus.pth", False),
    ("make a fox in the snow, then upscale it with 4x-UltraSharp", "4x-UltraSharp.pth", False),
    ("用 4x-UltraSharp 把 photo.png 放大2倍", "4x-UltraSharp.pth", True),
])
def test_a_named_upscale_model_binds_the_installed_file_it_names(isolated_folders, catalog_data, text, model,
                                                                  rescaled):
    registry = target(isolated_folders, catalog_data, UPSCALERS)
    _, wf = _planned(text, registry)
    assert only(wf, "UpscaleModelLoader")[1]["model_name"] == model
    assert bool(of(wf, "ImageScaleBy")) == rescaled


@pytest.mark.parametrize("text", ["upscale photo.png with an upscale model, then scale the result down to 2x the original",
                                  "先用放大模型把photo.png放大,然后再缩小到原图的2倍"])
def test_a_model_upscale_then_a_resize_reaches_the_factor_of_the_original(comfy, text):
    result, wf = _planned(text, comfy)
    assert result.status == "valid" and result.question is None
    up, _ = only(wf, "ImageUpscaleWithModel")
    _, scaled = only(wf, "ImageScaleBy")
    assert scaled["image"] == [up, 0] and scaled["scale_by"] == 0.5  # the installed model is 4x
    assert not {"KSampler", "VAEEncode"} & set(classes(wf))


@pytest.mark.parametrize("text,prompt", [("photo.png用mask.png把天空重绘成晚霞,然后放大2倍", "晚霞"),
                                         ("repaint the sky of photo.png as a sunset sky using mask.png, then upscale 2x",
                                          "a sunset sky")])
def test_an_inpaint_with_a_mask_file_keeps_the_mask_before_the_upscale(comfy, text, prompt):
    _, wf = _planned(text, comfy)
    mask, _ = only(wf, "LoadImageMask")
    _, encode = only(wf, "VAEEncodeForInpaint")
    assert encode["mask"] == [mask, 0]
    assert [n["inputs"]["text"] for n in wf.values() if n["class_type"] == "CLIPTextEncode"][0] == prompt
    decode, _ = only(wf, "VAEDecode")
    assert only(wf, "ImageUpscaleWithModel")[1]["image"] == [decode, 0]


@pytest.mark.parametrize("text", ["turn clip.mp4 into an anime style video, then upscale it 2x",
                                  "把clip.mp4转成水彩风格的视频,然后放大2倍"])
def test_an_upscale_after_a_video_step_upscales_its_frames(comfy, text):
    result, wf = _planned(text, comfy)
    assert result.status == "valid" and result.question is None
    assert not {"LoadImage", "SaveImage"} & set(classes(wf))
    _, scaled = only(wf, "ImageScaleBy")
    assert only(wf, "CreateVideo")[1]["images"] == [next(k for k, n in wf.items() if n["inputs"] is scaled), 0]
    assert all(not p.endswith("的") for p in (n["inputs"]["text"] for n in wf.values()
                                              if n["class_type"] == "CLIPTextEncode"))


@pytest.mark.parametrize("text", ["用canny提取photo.png的线条,生成一个现代客厅",
                                  "extract the canny lines of photo.png, then draw a modern living room"])
def test_an_explicit_canny_word_wins_over_lines(comfy, text):
    result, wf = _planned(text, comfy)
    assert result.status == "valid"
    assert only(wf, "ControlNetLoader")[1]["control_net_name"] == "control_v11p_sd15_canny.pth" and only(wf, "Canny")


@pytest.mark.parametrize("text", ["去掉photo.png的背景", "把photo.png的背景去掉", "从photo.png里抠出人物",
                                  "cut out the person in photo.png"])
def test_background_removal_wordings_are_not_covered_with_a_reason(comfy, text):
    from agent.planner import plan

    result = plan(text, registry=comfy)
    assert [c["kind"] for c in result.not_covered] == ["remove_background"]
    assert result.not_covered[0]["reason"] and "VAEEncodeForInpaint" not in classes(result.workflow or {})


@pytest.mark.parametrize("text", ["把photo.png的背景换成海边", "replace the background of photo.png with a beach"])
def test_a_replaced_background_stays_an_inpaint(comfy, text):
    result, wf = _planned(text, comfy)
    assert result.not_covered == [] and only(wf, "VAEEncodeForInpaint")


@pytest.mark.parametrize("text,denoise", [("把photo.png转成水彩风格,降噪0.45", 0.45),
                                          ("restyle photo.png as a watercolor painting (low strength, like 0.35)", 0.35)])
def test_a_stated_strength_is_the_samplers_denoise(comfy, text, denoise):
    _, wf = _planned(text, comfy)
    assert only(wf, "KSampler")[1]["denoise"] == denoise
    texts = [n["inputs"]["text"] for n in wf.values() if n["class_type"] == "CLIPTextEncode"]
    assert not any(str(denoise) in t for t in texts), texts
