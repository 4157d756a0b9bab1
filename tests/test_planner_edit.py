"""Editing a given workflow by words, offline, in Chinese and English (agent.offline.edit), and its diff.

Base workflows are written here (SD 1.5 text-to-image, img2img, text-to-image with a LoRA, Wan 2.1 text-to-video);
every edited workflow is validated against the ComfyUI catalog with placeholder model files installed."""

from __future__ import annotations

import copy

import pytest
from PIL import Image

from agent.offline.edit import edit_workflow
from compiler import format_text, validate
from compiler.diff import diff_workflows
from compiler.errors import WorkflowFormatError
from runtime import folders
from runtime.errors import BadRequest

SD15 = "v1-5-pruned-emaonly.safetensors"
SDXL = "sd_xl_base_1.0.safetensors"
LORA = "detail_tweaker.safetensors"


def t2i() -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 1, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def t2i_lora() -> dict:
    wf = t2i()
    wf["10"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": LORA,
                                                        "strength_model": 0.8, "strength_clip": 0.8}}
    wf["3"]["inputs"]["model"] = ["10", 0]
    wf["6"]["inputs"]["clip"] = wf["7"]["inputs"]["clip"] = ["10", 1]
    return wf


def img2img() -> dict:
    wf = t2i()
    del wf["5"]
    wf["10"] = {"class_type": "LoadImage", "inputs": {"image": "cat.png"}}
    wf["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    wf["3"]["inputs"].update(latent_image=["11", 0], denoise=0.75)
    return wf


def wan_t2v() -> dict:
    return {
        "37": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors",
                                                      "weight_dtype": "default"}},
        "38": {"class_type": "CLIPLoader", "inputs": {"clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                                      "type": "wan", "device": "default"}},
        "39": {"class_type": "VAELoader", "inputs": {"vae_name": "wan_2.1_vae.safetensors"}},
        "48": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["37", 0], "shift": 8.0}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox running in snow", "clip": ["38", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "static, blurry", "clip": ["38", 0]}},
        "40": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 832, "height": 480, "length": 33,
                                                                   "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 82628696717253, "steps": 30, "cfg": 6.0, "sampler_name": "uni_pc", "scheduler": "simple",
            "denoise": 1.0, "model": ["48", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["40", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["39", 0]}},
        "28": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI",
                                                            "fps": 16.0, "lossless": False, "quality": 90,
                                                            "method": "default"}},
    }


@pytest.fixture
def installed(isolated_folders):
    """Placeholder model and input files, the way a user's folders hold them."""
    files = {"checkpoints": [SD15, SDXL], "loras": [LORA, "wan_style.safetensors"],
             "diffusion_models": ["wan2.1_t2v_1.3B_fp16.safetensors"],
             "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["wan_2.1_vae.safetensors"]}
    for kind, names in files.items():
        (isolated_folders / "models" / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            (isolated_folders / "models" / kind / name).write_bytes(b"placeholder")
    for name in ("cat.png", "room.jpg"):
        Image.new("RGB", (8, 8), "gray").save(isolated_folders / "input" / name)
    return isolated_folders


def edit(workflow, request, registry, **overrides):
    """edit_workflow with what is installed now, as the planner calls it."""
    kwargs = {"checkpoints": folders.model_files("checkpoints"), "loras": folders.model_files("loras"),
              "inputs": folders.input_files(), "upscale_models": folders.model_files("upscale_models"), **overrides}
    return edit_workflow(workflow, request, registry=registry, **kwargs)


def assert_valid(result, registry):
    assert result.valid, result.errors
    assert validate(result.workflow, registry).valid




# ---- the diff ---------------------------------------------------------------------------------------------
def test_diff_lists_added_removed_changed_and_relinked_nodes_readably():
    before, after = t2i(), t2i()
    after["3"]["inputs"]["steps"] = 30
    after["3"]["inputs"]["model"] = ["12", 0]
    after["12"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x"}}
    del after["7"]
    diff = diff_workflows(before, after)
    assert [(n.id, n.class_type) for n in diff.added] == [("12", "LoraLoader")]
    assert [(n.id, n.class_type) for n in diff.removed] == [("7", "CLIPTextEncode")]
    assert [(c.id, c.input, c.before, c.after) for c in diff.changed] == [("3", "steps", 20, 30)]
    assert [(c.id, c.input, c.before, c.after) for c in diff.relinked] == [("3", "model", ["4", 0], ["12", 0])]
    assert diff.lines() == ["- 7 CLIPTextEncode", "+ 12 LoraLoader (lora_name='x')",
                            "~ 3 KSampler.steps: 20 → 30", "> 3 KSampler.model: 4.0 → 12.0"]
    assert diff_workflows(before, copy.deepcopy(before)).empty


# ---- sampling values, size, count -------------------------------------------------------------------------
def test_chinese_steps_cfg_and_removing_the_negative_prompt(catalog_registry, installed):
    result = edit(t2i(), "把采样步数改成30，cfg 改为 5，去掉反向提示词", catalog_registry)
    ks = result.workflow["3"]["inputs"]
    assert (ks["steps"], ks["cfg"]) == (30, 5.0)
    assert result.workflow["7"]["inputs"]["text"] == ""
    assert result.workflow["6"]["inputs"]["text"] == "a cat"
    assert {(c.id, c.input) for c in result.diff.changed} == {("3", "steps"), ("3", "cfg"), ("7", "text")}
    assert not result.diff.added and not result.diff.removed and not result.not_understood
    assert result.summary.startswith("已修改工作流")
    assert_valid(result, catalog_registry)


def test_english_sampler_alias_scheduler_seed_and_count(catalog_registry, installed):
    result = edit(t2i(), "use euler a with karras, seed 42 and make it 4 images", catalog_registry)
    ks = result.workflow["3"]["inputs"]
    assert (ks["sampler_name"], ks["scheduler"], ks["seed"]) == ("euler_ancestral", "karras", 42)
    assert result.workflow["5"]["inputs"]["batch_size"] == 4
    assert "~ 5 EmptyLatentImage.batch_size: 1 → 4" in result.diff.lines()
    assert_valid(result, catalog_registry)


def test_chinese_portrait_count_and_upscale_in_pixels(catalog_registry, installed):
    result = edit(t2i(), "改成竖版，4张，然后放大2倍", catalog_registry)
    latent = result.workflow["5"]["inputs"]
    assert latent["height"] > latent["width"] and latent["batch_size"] == 4
    (scale,) = [n.id for n in result.diff.added]
    assert result.workflow[scale] == {"class_type": "ImageScaleBy", "inputs": {
        "image": ["8", 0], "upscale_method": "lanczos", "scale_by": 2.0}}
    assert result.workflow["9"]["inputs"]["images"] == [scale, 0]
    assert_valid(result, catalog_registry)


def test_img2img_size_count_denoise_and_new_input_image(catalog_registry, installed):
    result = edit(img2img(), "use room.jpg instead, make it 1024x768, denoise 0.6 and 2 images", catalog_registry)
    wf = result.workflow
    assert wf["10"]["inputs"]["image"] == "room.jpg" and wf["3"]["inputs"]["denoise"] == 0.6
    added = {n.class_type: n.id for n in result.diff.added}
    assert set(added) == {"ImageScale", "RepeatLatentBatch"}
    assert wf["11"]["inputs"]["pixels"] == [added["ImageScale"], 0]
    assert wf[added["ImageScale"]]["inputs"]["image"] == ["10", 0]
    assert (wf[added["ImageScale"]]["inputs"]["width"], wf[added["ImageScale"]]["inputs"]["height"]) == (1024, 768)
    assert wf["3"]["inputs"]["latent_image"] == [added["RepeatLatentBatch"], 0]
    assert_valid(result, catalog_registry)


def test_an_input_image_not_in_the_folder_is_asked_for(catalog_registry, installed):
    asked = edit(img2img(), "换成 beach.png", catalog_registry)
    assert asked.question is not None and asked.question.slot == "image"
    assert set(asked.question.choices) == {"cat.png", "room.jpg"}
    assert asked.workflow == img2img() and asked.diff.empty
    answered = edit(img2img(), "换成 beach.png", catalog_registry, answers={"image": "room.jpg"})
    assert answered.workflow["10"]["inputs"]["image"] == "room.jpg"


# ---- prompts ----------------------------------------------------------------------------------------------
def test_unquoted_prompt_keeps_its_and_and_later_settings_still_apply(catalog_registry, installed):
    result = edit(t2i(), "change the prompt to a red car and a dog, seed 42", catalog_registry)
    assert result.workflow["6"]["inputs"]["text"] == "a red car and a dog"
    assert result.workflow["3"]["inputs"]["seed"] == 42
    assert not result.not_understood


def test_quoted_addition_to_the_prompt_and_a_new_negative(catalog_registry, installed):
    result = edit(t2i(), "add 'sunset, golden hour' to the prompt; negative: lowres, watermark", catalog_registry)
    assert result.workflow["6"]["inputs"]["text"] == "a cat, sunset, golden hour"
    assert result.workflow["7"]["inputs"]["text"] == "lowres, watermark"
    assert_valid(result, catalog_registry)


def test_chinese_prompt_and_negative_prompt(catalog_registry, installed):
    result = edit(t2i(), "把提示词改成一只在雪地里的狐狸，然后在反向提示词里加上模糊", catalog_registry)
    assert result.workflow["6"]["inputs"]["text"] == "一只在雪地里的狐狸"
    assert result.workflow["7"]["inputs"]["text"] == "blurry, 模糊"


# ---- LoRA -------------------------------------------------------------------------------------------------
def test_add_a_named_lora_between_the_loader_and_every_consumer(catalog_registry, installed):
    result = edit(t2i(), "add a LoRA detail_tweaker at strength 0.7", catalog_registry)
    (lora,) = [n.id for n in result.diff.added]
    assert lora not in t2i()
    wf = result.workflow
    assert wf[lora]["inputs"] == {"model": ["4", 0], "clip": ["4", 1], "lora_name": LORA, "strength_model": 0.7,
                                  "strength_clip": 0.7}
    assert wf["3"]["inputs"]["model"] == [lora, 0]
    assert wf["6"]["inputs"]["clip"] == wf["7"]["inputs"]["clip"] == [lora, 1]
    assert {(c.id, c.input) for c in result.diff.relinked} == {("3", "model"), ("6", "clip"), ("7", "clip")}
    assert f"+ {lora} LoraLoader (lora_name='{LORA}', strength_model=0.7, strength_clip=0.7)" in result.diff.lines()
    assert_valid(result, catalog_registry)


def test_an_unnamed_lora_is_asked_for_with_the_installed_choices(catalog_registry, installed):
    asked = edit(t2i(), "加一个LoRA", catalog_registry)
    assert asked.question.slot == "lora" and set(asked.question.choices) == {LORA, "wan_style.safetensors"}
    answered = edit(t2i(), "加一个LoRA", catalog_registry, answers={"lora": LORA})
    assert [n.class_type for n in answered.diff.added] == ["LoraLoader"]
    assert_valid(answered, catalog_registry)


def test_removing_the_lora_rewires_back_to_the_checkpoint(catalog_registry, installed):
    for request in ("remove the lora", "去掉LoRA"):
        result = edit(t2i_lora(), request, catalog_registry)
        assert result.workflow == t2i()
        assert [(n.id, n.class_type) for n in result.diff.removed] == [("10", "LoraLoader")]
        assert_valid(result, catalog_registry)


def test_wan_video_lora_frames_and_steps(catalog_registry, installed):
    result = edit(wan_t2v(), "add the wan_style lora, 81 frames, steps 20", catalog_registry)
    wf = result.workflow
    (lora,) = [n.id for n in result.diff.added]
    assert wf[lora]["inputs"]["model"] == ["37", 0] and wf[lora]["inputs"]["clip"] == ["38", 0]
    assert wf["48"]["inputs"]["model"] == [lora, 0]
    assert wf["6"]["inputs"]["clip"] == [lora, 1]
    assert wf["40"]["inputs"]["length"] == 81 and wf["3"]["inputs"]["steps"] == 20
    assert_valid(result, catalog_registry)


# ---- checkpoint -------------------------------------------------------------------------------------------
def test_switch_to_sdxl_picks_the_installed_one_and_doubles_a_512_latent(catalog_registry, installed):
    result = edit(t2i(), "switch to SDXL", catalog_registry)
    assert result.workflow["4"]["inputs"]["ckpt_name"] == SDXL
    assert (result.workflow["5"]["inputs"]["width"], result.workflow["5"]["inputs"]["height"]) == (1024, 1024)
    assert_valid(result, catalog_registry)
    explicit = edit(t2i(), "换成SDXL模型，尺寸 1152x896", catalog_registry)
    assert (explicit.workflow["5"]["inputs"]["width"], explicit.workflow["5"]["inputs"]["height"]) == (1152, 896)


def test_switch_to_a_family_that_is_not_installed_asks(catalog_registry, installed):
    asked = edit(t2i(), "switch to flux", catalog_registry)
    assert asked.question.slot == "checkpoint" and set(asked.question.choices) == {SD15, SDXL}
    assert "Flux" in asked.question.text
    answered = edit(t2i(), "switch to flux", catalog_registry, answers={"checkpoint": SDXL})
    assert answered.workflow["4"]["inputs"]["ckpt_name"] == SDXL


def test_a_checkpoint_switch_on_a_workflow_without_one_is_reported_not_done(catalog_registry, installed):
    result = edit(wan_t2v(), "switch to SDXL and preview only", catalog_registry)
    assert not result.not_understood
    assert [(n.kind, n.what) for n in result.not_covered] == [("checkpoint", "switch to SDXL")]
    assert "no checkpoint loader" in result.not_covered[0].reason and "no checkpoint loader" in result.summary
    assert [c.kind for c in result.changes] == ["save"]
    assert [n.class_type for n in result.diff.removed] == ["SaveAnimatedWEBP"]
    assert [n.class_type for n in result.diff.added] == ["PreviewImage"]
    assert_valid(result, catalog_registry)


# ---- appended stages, outputs, removing nodes -------------------------------------------------------------
def test_upscale_with_an_installed_model_then_scale_to_the_factor(catalog_registry, installed):
    (installed / "models" / "upscale_models").mkdir(exist_ok=True)
    (installed / "models" / "upscale_models" / "4x-UltraSharp.pth").write_bytes(b"placeholder")
    result = edit(t2i(), "then upscale it 2x", catalog_registry)
    added = {n.class_type: n.id for n in result.diff.added}
    wf = result.workflow
    assert wf[added["UpscaleModelLoader"]]["inputs"] == {"model_name": "4x-UltraSharp.pth"}
    assert wf[added["ImageUpscaleWithModel"]]["inputs"]["image"] == ["8", 0]
    assert wf[added["ImageScaleBy"]]["inputs"]["scale_by"] == 0.5
    assert wf["9"]["inputs"]["images"] == [added["ImageScaleBy"], 0]
    assert_valid(result, catalog_registry)


def test_hires_fix_webp_and_a_clause_not_understood(catalog_registry, installed):
    result = edit(t2i(), "add a hires fix, save as webp, and fly to the moon", catalog_registry)
    assert result.not_understood == ["fly to the moon"]
    assert "Not understood: 'fly to the moon'" in result.summary
    added = {n.class_type: n.id for n in result.diff.added}
    wf = result.workflow
    second = wf[added["KSampler"]]["inputs"]
    assert second["latent_image"] == [added["LatentUpscaleBy"], 0] and second["denoise"] == 0.5
    assert wf[added["LatentUpscaleBy"]]["inputs"]["samples"] == ["3", 0]
    assert wf["8"]["inputs"]["samples"] == [added["KSampler"], 0]
    assert [n.id for n in result.diff.removed] == ["9"]
    assert wf[added["SaveAnimatedWEBP"]]["inputs"]["images"] == ["8", 0]
    assert_valid(result, catalog_registry)


def test_preview_only_and_back_to_saving(catalog_registry, installed):
    preview = edit(t2i(), "只预览，不保存", catalog_registry)
    assert sorted(n["class_type"] for n in preview.workflow.values()).count("PreviewImage") == 1
    assert "SaveImage" not in {n["class_type"] for n in preview.workflow.values()}
    saved = edit(preview.workflow, "save it", catalog_registry)
    assert [n.class_type for n in saved.diff.added] == ["SaveImage"]
    assert_valid(saved, catalog_registry)


def test_removing_a_node_by_class_passes_its_input_through(catalog_registry, installed):
    upscaled = edit(t2i(), "upscale 2x", catalog_registry).workflow
    result = edit(upscaled, "remove the ImageScaleBy node", catalog_registry)
    assert result.workflow == t2i()
    refused = edit(t2i(), "delete the VAEDecode", catalog_registry)
    assert [(n.kind, n.what) for n in refused.not_covered] == [("remove_node", "delete the VAEDecode")]
    assert refused.diff.empty and not refused.changes
    assert "would leave them unconnected" in refused.summary


# ---- the workflow's other forms, bad input ----------------------------------------------------------------
def test_text_form_input_is_edited(catalog_registry, installed):
    text = format_text(t2i(), catalog_registry)
    result = edit(text, "steps 25", catalog_registry)
    assert result.source_format == "text"
    (sampler,) = [i for i, n in result.workflow.items() if n["class_type"] == "KSampler"]
    assert result.workflow[sampler]["inputs"]["steps"] == 25
    assert [(c.input, c.before, c.after) for c in result.diff.changed] == [("steps", 20, 25)]


def _ui_node(nid, ntype, widgets, inputs=()):
    return {"id": nid, "type": ntype, "mode": 0, "outputs": [], "properties": {}, "widgets_values": widgets,
            "inputs": [{"name": name, "type": typ, "link": link} for name, typ, link in inputs]}


def test_ui_form_input_is_edited(catalog_registry, installed):
    ui = {"nodes": [
        _ui_node(4, "CheckpointLoaderSimple", [SD15]),
        _ui_node(5, "EmptyLatentImage", [512, 512, 1]),
        _ui_node(6, "CLIPTextEncode", ["a fox"], [("clip", "CLIP", 1)]),
        _ui_node(7, "CLIPTextEncode", ["blurry"], [("clip", "CLIP", 2)]),
        _ui_node(3, "KSampler", [42, "fixed", 20, 7.5, "euler", "normal", 1.0],
                 [("model", "MODEL", 3), ("positive", "CONDITIONING", 4), ("negative", "CONDITIONING", 5),
                  ("latent_image", "LATENT", 6)]),
        _ui_node(8, "VAEDecode", [], [("samples", "LATENT", 7), ("vae", "VAE", 8)]),
        _ui_node(9, "SaveImage", ["ComfyUI"], [("images", "IMAGE", 9)]),
    ], "links": [[1, 4, 1, 6, 0, "CLIP"], [2, 4, 1, 7, 0, "CLIP"], [3, 4, 0, 3, 0, "MODEL"],
                 [4, 6, 0, 3, 1, "CONDITIONING"], [5, 7, 0, 3, 2, "CONDITIONING"], [6, 5, 0, 3, 3, "LATENT"],
                 [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]], "version": 0.4}
    result = edit(ui, "add a LoRA detail_tweaker and 种子改成7", catalog_registry)
    assert result.source_format == "ui"
    (lora,) = [n.id for n in result.diff.added]
    assert result.workflow["3"]["inputs"]["model"] == [lora, 0] and result.workflow["3"]["inputs"]["seed"] == 7
    assert_valid(result, catalog_registry)


def test_bad_input_is_a_clear_error(catalog_registry, installed):
    with pytest.raises(BadRequest):
        edit(t2i(), "   ", catalog_registry)
    with pytest.raises(WorkflowFormatError):
        edit({"1": {"inputs": {}}}, "steps 30", catalog_registry)
    with pytest.raises(WorkflowFormatError):
        edit("{not json", "steps 30", catalog_registry)


# ---- round 2: capabilities, loosely named LoRAs, negatives, video prompts, not covered ---------------------
@pytest.fixture
def styled(installed):
    """Two style LoRAs besides the fixture's: one SD 1.5 and one SDXL watercolor, one ink."""
    for name in ("watercolor_sd15.safetensors", "watercolor_xl.safetensors", "InkWash-v2.safetensors"):
        (installed / "models" / "loras" / name).write_bytes(b"placeholder")
    return installed


@pytest.mark.parametrize("request_text, strength", [
    ("put the watercolor LoRA on it at 0.6", 0.6),
    ("加上水彩 LoRA，强度 0.6", 0.6),
    ("add the ink wash lora", 1.0),
])
def test_a_loosely_named_installed_lora_is_loaded_not_asked(catalog_registry, styled, request_text, strength):
    result = edit(t2i(), request_text, catalog_registry)
    assert result.question is None, result.question
    (lora,) = [n.id for n in result.diff.added]
    inputs = result.workflow[lora]["inputs"]
    wanted = "InkWash-v2.safetensors" if "ink" in request_text else "watercolor_sd15.safetensors"
    assert (inputs["lora_name"], inputs["strength_model"], inputs["strength_clip"]) == (wanted, strength, strength)
    assert result.workflow["3"]["inputs"]["model"] == [lora, 0]
    assert {c.kind for c in result.changes} == {"lora"} and not result.not_understood
    assert_valid(result, catalog_registry)


def test_a_lora_name_matching_several_files_asks_between_them(catalog_registry, styled):
    on_sd15 = edit(t2i(), "add the watercolor lora", catalog_registry)  # the one made for the checkpoint's family
    assert on_sd15.question is None
    wf = wan_t2v()
    asked = edit(wf, "add the watercolor lora", catalog_registry)
    assert asked.question.slot == "lora"
    assert set(asked.question.choices) == {"watercolor_sd15.safetensors", "watercolor_xl.safetensors"}
    assert asked.workflow == wf and asked.diff.empty
    none = edit(t2i(), "add the cyberpunk lora", catalog_registry)
    assert none.question.slot == "lora" and LORA in none.question.choices


@pytest.mark.parametrize("request_text", ["把LoRA强度调低到0.5", "set the lora weight to 0.5", "lora strength 0.5",
                                          "LoRA 权重改成 0.5"])
def test_a_stated_strength_reweights_the_lora_present(catalog_registry, installed, request_text):
    result = edit(t2i_lora(), request_text, catalog_registry)
    assert result.question is None and not result.diff.added
    lora = result.workflow["10"]["inputs"]
    assert (lora["lora_name"], lora["strength_model"], lora["strength_clip"]) == (LORA, 0.5, 0.5)
    assert {(c.input, c.after) for c in result.diff.changed} == {("strength_model", 0.5), ("strength_clip", 0.5)}


def test_switching_the_lora_to_another_installed_one(catalog_registry, styled):
    result = edit(t2i_lora(), "换成水彩LoRA", catalog_registry)
    assert result.workflow["10"]["inputs"]["lora_name"] == "watercolor_sd15.safetensors"
    assert result.workflow["10"]["inputs"]["strength_model"] == 0.8 and not result.diff.added


@pytest.mark.parametrize("request_text", ["add people, boats and birds to the negative prompt, then steps 25",
                                          "把人物、船只和鸟加到反向提示词里，步数改成25"])
def test_words_added_to_the_negative_keep_the_old_ones_and_the_positive(catalog_registry, installed,
                                                                       request_text):
    result = edit(t2i(), request_text, catalog_registry)
    negative = result.workflow["7"]["inputs"]["text"]
    assert negative.startswith("blurry, ")
    assert all(w in negative for w in ("人物", "船只", "鸟")) or all(w in negative for w in ("people", "boats", "birds"))
    assert result.workflow["6"]["inputs"]["text"] == "a cat"
    assert result.workflow["3"]["inputs"]["steps"] == 25
    assert [c.kind for c in result.changes] == ["negative", "sampling"] and not result.not_understood
    assert_valid(result, catalog_registry)


@pytest.mark.parametrize("request_text, text", [
    ("change the video prompt to a paper boat on a river and make it 49 frames", "a paper boat on a river"),
    ("视频提示词改成一只纸船在河上漂，然后改成49帧", "一只纸船在河上漂"),
])
def test_video_prompt_and_length(catalog_registry, installed, request_text, text):
    result = edit(wan_t2v(), request_text, catalog_registry)
    wf = result.workflow
    assert wf["6"]["inputs"]["text"] == text and wf["7"]["inputs"]["text"] == "static, blurry"
    assert wf["40"]["inputs"]["length"] == 49 and wf["40"]["inputs"]["width"] == 832
    assert [c.kind for c in result.changes] == ["prompt", "length"]
    assert_valid(result, catalog_registry)


@pytest.mark.parametrize("request_text", ["再补帧到 60fps", "then interpolate it to 60 fps and steps 20"])
def test_interpolation_is_not_covered_and_the_rest_still_applies(catalog_registry, installed, request_text):
    result = edit(wan_t2v(), request_text, catalog_registry)
    (gap,) = result.not_covered
    assert gap.kind == "interpolate" and "60 fps" in gap.reason and "Frame-Interpolation" in gap.suggestion
    assert gap.as_dict()["reason"].startswith("no installed node provides frame interpolation")
    assert not result.not_understood
    steps = [c for c in result.diff.changed if c.input == "steps"]
    assert (len(steps) == 1) == ("steps" in request_text) and not result.diff.added
    assert_valid(result, catalog_registry)


def test_change_kinds_name_the_capability_used(catalog_registry, installed):
    result = edit(t2i(), "seed 7, 768x512, 2 images, then upscale 2x, preview only and remove the negative",
                  catalog_registry)
    assert [c.kind for c in result.changes] == ["sampling", "size", "count", "upscale", "save", "negative"]
    assert all(c.as_dict()["kind"] == c.kind for c in result.changes)
