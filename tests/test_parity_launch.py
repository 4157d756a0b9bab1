"""ComfyUI launch flags: extra_model_paths.yaml maps every folder kind ComfyUI maps, and `nodeweaver mcp` takes
the same folder, model, device and cache flags as `serve`."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from conftest import REPO

from nodeweaver.cli import _activate_settings, build_parser
from runtime import folders
from runtime.settings import activate

YAML = """\
comfyui:
    base_path: ../comfy
    checkpoints: models/checkpoints/
    loras: |
        models/loras
        more_loras
    vae: models/vae
    upscale_models: models/upscale_models
    controlnet: models/controlnet
    clip: models/clip
    clip_vision: models/clip_vision
    text_encoders: models/text_encoders
    unet: models/unet
    embeddings: models/embeddings
    style_models: models/style_models
    photomaker: models/photomaker
    custom_nodes: custom_nodes
shared:
    is_default: true
    checkpoints: /ABS/first_checkpoints
"""

KINDS = {"checkpoints": "models/checkpoints", "loras": "more_loras", "vae": "models/vae",
         "upscale_models": "models/upscale_models", "controlnet": "models/controlnet",
         "clip_vision": "models/clip_vision", "embeddings": "models/embeddings",
         "style_models": "models/style_models", "photomaker": "models/photomaker"}


@pytest.fixture
def config(tmp_path):
    comfy = tmp_path / "comfy"
    for kind, sub in KINDS.items():
        (comfy / sub).mkdir(parents=True)
        (comfy / sub / f"{kind}_model.safetensors").write_bytes(b"x")
    for sub, name in (("models/clip", "old_clip.safetensors"), ("models/text_encoders", "t5.safetensors"),
                      ("models/unet", "flux.safetensors")):
        (comfy / sub).mkdir(parents=True, exist_ok=True)
        (comfy / sub / name).write_bytes(b"x")
    (tmp_path / "first_checkpoints").mkdir()
    (tmp_path / "first_checkpoints" / "default_ckpt.safetensors").write_bytes(b"x")
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "extra_model_paths.yaml"
    path.write_text(YAML.replace("/ABS", str(tmp_path)))
    return path


def settings_for(*argv: str):
    return _activate_settings(build_parser().parse_args(list(argv)))


def test_every_kind_comfyui_maps_is_searched(config, tmp_path):
    try:
        settings = settings_for("serve", "--extra-model-paths-config", str(config), "--models-dir",
                                str(tmp_path / "own"))
        for kind in KINDS:
            assert f"{kind}_model.safetensors" in folders.model_files(kind), kind
        # legacy names: clip is text_encoders, unet is diffusion_models (ComfyUI's map_legacy)
        assert folders.model_files("text_encoders") == ["old_clip.safetensors", "t5.safetensors"]
        assert folders.model_files("clip") == folders.model_files("text_encoders")
        assert folders.model_files("diffusion_models") == ["flux.safetensors"]
        # the is_default section's folder is searched first, then ours, then the others
        searched = folders.model_folders("checkpoints")
        assert searched[0] == tmp_path / "first_checkpoints" and searched[1] == tmp_path / "own" / "checkpoints"
        assert folders.model_files("checkpoints") == ["checkpoints_model.safetensors", "default_ckpt.safetensors"]
        assert folders.model_path("loras", "loras_model.safetensors") == \
            tmp_path / "comfy" / "more_loras" / "loras_model.safetensors"
        assert settings.custom_nodes == [tmp_path / "comfy" / "custom_nodes"]
        assert "photomaker" in folders.model_kinds()
    finally:
        activate(None)


def test_packs_see_the_extra_folders_through_folder_paths(config):
    from nodes.comfy_compat import folder_paths

    try:
        settings_for("serve", "--extra-model-paths-config", str(config))
        assert folder_paths.get_filename_list("unet") == ["flux.safetensors"]
        assert folder_paths.get_full_path("vae", "vae_model.safetensors").endswith("models/vae/vae_model.safetensors")
        assert folder_paths.map_legacy("clip") == "text_encoders"
    finally:
        activate(None)


def test_a_kind_that_is_not_a_path_is_a_clear_error(tmp_path):
    from runtime.errors import NodeWeaverError

    bad = tmp_path / "bad.yaml"
    bad.write_text("comfyui:\n    checkpoints:\n        - a\n        - b\n")
    with pytest.raises(NodeWeaverError, match=r"\[comfyui\] checkpoints must be a path"):
        settings_for("serve", "--extra-model-paths-config", str(bad))


def test_mcp_takes_comfyuis_launch_flags(config, tmp_path):
    try:
        settings = settings_for("mcp", "--output-directory", str(tmp_path / "out"), "--input-directory",
                                str(tmp_path / "in"), "--temp-directory", str(tmp_path / "tmp"),
                                "--extra-model-paths-config", str(config), "--cpu", "--cache-lru", "5",
                                "--disable-all-custom-nodes")
        assert (settings.output_dir, settings.input_dir, settings.temp_dir) == \
            (tmp_path / "out", tmp_path / "in", tmp_path / "tmp")
        assert settings.engine.device == "cpu" and settings.engine.cache_lru_size == 5
        assert settings.custom_nodes == []
        assert "vae_model.safetensors" in folders.model_files("vae")
    finally:
        activate(None)


@pytest.mark.slow
def test_mcp_over_stdio_validates_against_the_extra_model_folders(config, tmp_path):
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = {**os.environ, "NODEWEAVER_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), env=env, args=[
        "-m", "nodeweaver.cli", "mcp", "--extra-model-paths-config", str(config), "--cpu",
        "--disable-all-custom-nodes"])

    def loader(name: str) -> dict:
        return {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}}}

    async def main():
        async with stdio_client(params) as streams, ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            return [await session.call_tool("validate_workflow", {"workflow": loader(name)})
                    for name in ("default_ckpt.safetensors", "absent.safetensors")]

    def ckpt_errors(result) -> list:
        return [e for e in result.structured_content.get("errors", []) if e.get("input_name") == "ckpt_name"]

    installed, absent = asyncio.run(main())
    assert ckpt_errors(installed) == [] and len(ckpt_errors(absent)) == 1
