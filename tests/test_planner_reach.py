"""Planner reach: the failures a new user met (issue 17), each as a test through plan() or the CLI.

Plans are made against ComfyUI 0.3.64's own catalog (../shared/fixtures) with a user's model folders holding
placeholder files, and checked for what the request asked: every stage planned, or listed under not_covered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.planner import plan
from compiler import validate
from evals.environment import build_environment

CATALOG = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "comfyui_object_info.json"
ENVIRONMENT = {
    "checkpoints": ["v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"],
    "loras": ["watercolor_v2.safetensors"],
    "upscale_models": ["4x-UltraSharp.pth"],
    "controlnet": ["control_v11p_sd15_canny.pth"],
    "input": ["photo.png", "car.png"],
}


@pytest.fixture(scope="module")
def catalog_registry():
    if not CATALOG.is_file():
        pytest.skip(f"no ComfyUI catalog at {CATALOG}")
    from nodes.registry import default_registry

    registry = default_registry()
    registry.import_catalog_file(CATALOG)
    return registry


@pytest.fixture
def user(isolated_folders):
    """The user's folders with their models and pictures (placeholders), as the settings point at them."""
    spec = dict(ENVIRONMENT)
    models = spec.pop("input")
    root = isolated_folders
    build_environment({**spec, "input": models}, root)
    return root


def _plan(request: str, registry, **kwargs):
    result = plan(request, registry=registry, **kwargs)
    return result, result.workflow or {}


def _nodes(workflow: dict, class_type: str) -> list[dict]:
    return [n for n in workflow.values() if n.get("class_type") == class_type]


def _texts(workflow: dict) -> list[str]:
    return [n["inputs"]["text"] for n in _nodes(workflow, "CLIPTextEncode") if isinstance(n["inputs"]["text"], str)]


def _positive(workflow: dict) -> str:
    """The text of the conditioning that feeds a sampler's `positive` input."""
    for node in workflow.values():
        link = node.get("inputs", {}).get("positive")
        if isinstance(link, list) and workflow[link[0]].get("class_type") == "CLIPTextEncode":
            return workflow[link[0]]["inputs"]["text"]
    raise AssertionError("no sampler with a CLIPTextEncode positive")


def _negative(workflow: dict) -> str:
    for node in workflow.values():
        link = node.get("inputs", {}).get("negative")
        if isinstance(link, list) and workflow[link[0]].get("class_type") == "CLIPTextEncode":
            return workflow[link[0]]["inputs"]["text"]
    raise AssertionError("no sampler with a CLIPTextEncode negative")


def _valid(workflow: dict, registry) -> bool:
    return validate(workflow, registry).valid


def test_bare_chinese_description_with_style_and_count(user, catalog_registry):
    result, wf = _plan("一只戴着墨镜的橘猫坐在沙滩椅上,赛博朋克风格,4张", catalog_registry)
    assert result.status == "valid", result.summary
    assert _nodes(wf, "EmptyLatentImage")[0]["inputs"]["batch_size"] == 4
    positive = _positive(wf)
    assert "橘猫" in positive and "赛博朋克" in positive
    assert "4张" not in positive
    assert _valid(wf, catalog_registry)


def test_chinese_negative_prompt_is_not_left_in_the_positive(user, catalog_registry):
    result, wf = _plan("一只红狐狸,反向提示词:模糊,卡通", catalog_registry)
    assert result.status == "valid", result.summary
    positive, negative = _positive(wf), _negative(wf)
    assert "红狐狸" in positive
    assert "反向提示词" not in positive and "模糊" not in positive and "卡通" not in positive
    assert "模糊" in negative and "卡通" in negative


@pytest.mark.parametrize("request_text, leaks", [
    ("Make an image of a lighthouse on a cliff", ["n image of", "image of"]),
    ("a castle on a hill at dawn, use the sdxl checkpoint", ["use the", "checkpoint"]),
    ("a dragon over a city, hires fix: then upscale latent 1.5x and refine", ["hires", "upscale", "refine"]),
])
def test_instruction_words_do_not_leak_into_the_prompt(user, catalog_registry, request_text, leaks):
    result, wf = _plan(request_text, catalog_registry)
    assert result.status in ("valid", "partial"), result.summary
    positive = _positive(wf).lower()
    for leak in leaks:
        assert leak not in positive, (leak, positive)


def test_restyle_an_input_image_in_chinese(user, catalog_registry):
    result, wf = _plan("把photo.png改成水彩画风格", catalog_registry)
    assert result.status == "valid", result.summary
    assert _nodes(wf, "LoadImage")[0]["inputs"]["image"] == "photo.png"
    assert _nodes(wf, "VAEEncode")
    positive = _positive(wf)
    assert "水彩" in positive and "把" not in positive and "改成" not in positive


def test_a_style_after_without_goes_to_the_positive(user, catalog_registry):
    result, wf = _plan("a quiet street without the car as an oil painting", catalog_registry)
    assert result.status in ("valid", "partial"), result.summary
    assert "oil painting" in _positive(wf).lower()
    assert "oil painting" not in _negative(wf).lower()
    assert "car" in _negative(wf).lower()


def test_the_default_negative_does_not_fight_a_request_for_text(user, catalog_registry):
    result, wf = _plan('a shop sign that says "OPEN" in neon letters', catalog_registry)
    assert result.status == "valid", result.summary
    assert "text" not in _negative(wf).lower()
    assert "OPEN" in _positive(wf)


def test_a_lora_that_is_not_installed_is_asked_about(user, catalog_registry):
    result, _ = _plan("a forest spirit with the ghibli lora", catalog_registry)
    assert result.status == "question", result.summary
    assert result.question["slot"] == "lora"
    assert "watercolor_v2.safetensors" in result.question["choices"]


def test_two_requested_pictures_make_two_branches(user, catalog_registry):
    result, wf = _plan("画两张图:一张是日出的海边,一张是夜晚的城市", catalog_registry)
    assert result.status == "valid", result.summary
    positives = [t for t in _texts(wf) if "海边" in t or "城市" in t]
    assert any("海边" in t and "城市" not in t for t in positives)
    assert any("城市" in t and "海边" not in t for t in positives)
    assert len(_nodes(wf, "KSampler")) >= 2
    assert len(_nodes(wf, "SaveImage")) + len(_nodes(wf, "PreviewImage")) >= 2
    assert len(_nodes(wf, "CheckpointLoaderSimple")) == 1


def test_refine_the_face_is_not_a_hires_pass(user, catalog_registry):
    result, wf = _plan("a portrait of an old fisherman, then refine the face", catalog_registry)
    assert not _nodes(wf, "LatentUpscaleBy")
    assert result.status in ("partial", "valid")
    if result.status == "partial":
        assert any(item["kind"] == "face_restore" for item in result.not_covered)
    else:
        assert any(item["kind"] == "face_restore" for item in result.covered)


def test_generate_then_upscale_keeps_both_stages(user, catalog_registry):
    result, wf = _plan("generate a snowy mountain village at night, then upscale 2x", catalog_registry)
    assert result.status == "valid", result.summary
    assert _nodes(wf, "KSampler")
    assert _nodes(wf, "ImageUpscaleWithModel") or _nodes(wf, "ImageScaleBy")
    assert "upscale" not in _positive(wf).lower()
    kinds = [c["kind"] for c in result.covered]
    assert "generate" in kinds and "upscale" in kinds
    assert _valid(wf, catalog_registry)


def test_replace_then_upscale_keeps_both_stages(user, catalog_registry):
    result, wf = _plan("in car.png replace the red car with a green one, then upscale 2x", catalog_registry)
    assert result.status == "valid", result.summary
    assert _nodes(wf, "VAEEncodeForInpaint") or _nodes(wf, "InpaintModelConditioning") \
        or _nodes(wf, "SetLatentNoiseMask")
    assert _nodes(wf, "ImageUpscaleWithModel") or _nodes(wf, "ImageScaleBy")
    assert "green" in _positive(wf).lower()
    assert _valid(wf, catalog_registry)


def test_frame_interpolation_is_listed_as_not_covered(user, catalog_registry):
    result, _ = _plan("animate photo.png into a short video, then interpolate the frames to 60fps", catalog_registry)
    assert result.status in ("partial", "question"), result.summary
    assert any(item["kind"] == "interpolate" for item in result.not_covered)
    missing = next(item for item in result.not_covered if item["kind"] == "interpolate")
    assert missing["reason"]


@pytest.mark.slow
def test_cli_partial_plan_has_its_own_exit_code_and_lists_what_is_missing(user, tmp_path):
    if not CATALOG.is_file():
        pytest.skip("no ComfyUI catalog")
    proc = subprocess.run([sys.executable, "-m", "nodeweaver.cli", "plan", "--catalog", str(CATALOG), "--json",
                           "a red fox in the snow, then make the background transparent"],
                          capture_output=True, text=True, timeout=120)
    data = json.loads(proc.stdout)
    assert data["status"] == "partial", data["summary"]
    assert proc.returncode == 6  # EXIT_PARTIAL
    assert any(item["kind"] == "remove_background" for item in data["not_covered"])


@pytest.mark.slow
def test_cli_edits_a_given_workflow_and_prints_the_changes(user):
    """`plan --from`: the workflow is changed, not planned anew; the diff is printed, the result validates."""
    base = Path(__file__).resolve().parents[1] / "evals" / "suites" / "workflows" / "t2i_sd15.json"
    out = user / "edited.json"
    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-m", "nodeweaver.cli", "plan", "--from", str(base), "-o", str(out),
                           "把采样步数改成30,然后放大2倍"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "KSampler.steps: 20 → 30" in proc.stdout
    edited = json.loads(out.read_text(encoding="utf-8"))
    original = json.loads(base.read_text(encoding="utf-8"))
    assert edited["5"]["inputs"]["steps"] == 30
    assert edited["2"] == original["2"]  # untouched nodes keep their ids and values
    added = {n["class_type"] for k, n in edited.items() if k not in original}
    assert added & {"ImageUpscaleWithModel", "ImageScaleBy"}


def test_a_reference_with_no_image_prompt_model_starts_the_picture_from_it(user, catalog_registry):
    """SD1.5 alone cannot read a reference image: the plan starts from it (img2img) and says so plainly."""
    from PIL import Image

    Image.new("RGB", (16, 16), (200, 120, 40)).save(user / "input" / "style.jpg")
    result, wf = _plan("Paint a harbor town in the style of style.jpg", catalog_registry)
    assert result.status == "valid", result.summary
    [load] = _nodes(wf, "LoadImage")
    assert load["inputs"]["image"] == "style.jpg"
    [encode] = _nodes(wf, "VAEEncode")
    [sampler] = _nodes(wf, "KSampler")
    assert 0.7 <= sampler["inputs"]["denoise"] < 1.0
    assert "harbor town" in _positive(wf)
    assert [c["kind"] for c in result.covered if c["kind"] == "reference"] == ["reference"]
    assert any("IPAdapter" in note for note in result.notes)


def test_plan_from_a_missing_or_broken_workflow_is_a_clear_refusal(isolated_folders, capsys):
    from nodeweaver.cli import EXIT_UNREADABLE, main

    assert main(["plan", "make it 4 images", "--from", str(isolated_folders / "missing.json")]) == EXIT_UNREADABLE
    err = capsys.readouterr().err
    assert "cannot read workflow" in err and "missing.json" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exited:
        main(["plan", "a fox", "--max-tool-calls", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize(("request_text", "settings", "prompt"), [
    ("一只雪地里的红狐狸,用 dpmpp_sde karras 采样 25 步", ("dpmpp_sde", "karras", 25), "一只雪地里的红狐狸"),
    ("一只雪地里的红狐狸,采样器用euler_ancestral,调度器karras", ("euler_ancestral", "karras", 20), "一只雪地里的红狐狸"),
    ("a lighthouse at dusk, res_multistep sampler with kl_optimal, 30 steps", ("res_multistep", "kl_optimal", 30),
     "a lighthouse at dusk"),
    ("a lighthouse at dusk, with the euler sampler and the normal scheduler", ("euler", "normal", 20),
     "a lighthouse at dusk"),
    ("a normal day at the beach, uni_pc_bh2 + linear_quadratic", ("uni_pc_bh2", "linear_quadratic", 20),
     "a normal day at the beach"),
])
def test_every_comfyui_sampler_and_scheduler_name_is_read_and_kept_out_of_the_prompt(
        user, registry, request_text, settings, prompt):
    result, workflow = _plan(request_text, registry)
    [sampler] = _nodes(workflow, "KSampler")
    inputs = sampler["inputs"]
    assert (inputs["sampler_name"], inputs["scheduler"], inputs["steps"]) == settings
    assert _positive(workflow) == prompt
    assert _valid(workflow, registry)
