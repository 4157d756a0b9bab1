"""ComfyUI's official template library: classification of real templates, search (en/zh), conversion, errors,
the cache, and its CLI, HTTP and MCP faces."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from conftest import CATALOG
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mcp import Client
from mcp.server.mcpserver import MCPServer

from agent.templates import TemplateLibrary, load_library
from agent.templates.library import _LOADED, _cache_path, registry_fingerprint
from agent.templates.source import package_version
from mcp_server.templates_api import register_tools, router
from nodes.registry import NodeRegistry
from nodeweaver.templates_cmd import main as templates_main
from runtime.errors import BadRequest, NotFound
from runtime.settings import load_settings, using

pytest.importorskip("comfyui_workflow_templates_json")


@pytest.fixture(scope="module")
def catalog_reg() -> NodeRegistry:
    if not CATALOG.is_file():
        pytest.skip(f"the shared ComfyUI catalog is not at {CATALOG}")
    registry = NodeRegistry()
    registry.load_builtin_packs()
    registry.import_catalog_file(CATALOG)
    return registry


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("templates-data")


@pytest.fixture(scope="module")
def library(catalog_reg, cache_dir) -> TemplateLibrary:
    """Built once for the module (about 2 s), with its cache in a folder of its own."""
    _LOADED.clear()
    with using(load_settings({"data_dir": cache_dir})):
        return load_library(catalog_reg, refresh=True)


def slot(info, key: str) -> list[tuple[str, str]]:
    return [(s.node, s.input) for s in info.slots.get(key, [])]


# ---- what each template does, from its nodes --------------------------------------------------------------
@pytest.mark.parametrize(("template_id", "task", "also"), [
    ("image_z_image_turbo", "t2i", set()),
    ("flux_fill_inpaint_example", "inpaint", {"i2i"}),
    ("flux_fill_outpaint_example", "outpaint", {"inpaint"}),
    ("flux_canny_model_example", "controlnet", {"i2i"}),
    ("utility_seedvr2_7b_int8_upscale_image", "upscale", set()),
    ("image_qwen_image_2_1_image_edit", "edit", set()),
    ("video_wan2_2_14B_t2v", "t2v", set()),
    ("video_wan2_2_14B_i2v", "i2v", set()),
    ("video_wan2_2_14B_flf2v", "flf2v", {"i2v"}),
    ("audio_stable_audio_3_medium", "audio", set()),
    ("3d_hunyuan3d-v2.1", "3d", set()),
    ("llm_qwen3_5_text_gen", "llm", set()),
    ("api_nano_banana_2_1_t2i", "t2i", {"api"}),
])
def test_known_templates_get_their_task(library, template_id, task, also):
    info = library.get(template_id)
    assert info.task == task
    assert {task} | also <= set(info.tasks)
    if "api" not in also:
        assert "api" not in info.tasks


def test_controlnet_kind_comes_from_the_nodes(library):
    assert library.get("flux_canny_model_example").controlnet_kinds == ["canny"]


def test_models_carry_folder_and_download_url(library):
    info = library.get("image_z_image_turbo")
    models = {m.name: m for m in info.models}
    assert set(models) == {"qwen_3_4b.safetensors", "ae.safetensors", "z_image_turbo_bf16.safetensors"}
    assert models["z_image_turbo_bf16.safetensors"].directory == "diffusion_models"
    assert models["qwen_3_4b.safetensors"].directory == "text_encoders"
    assert all(m.url.startswith("https://huggingface.co/") for m in models.values())
    loras = [m for m in library.get("video_wan2_2_14B_i2v").models if m.directory == "loras"]
    assert len(loras) == 2 and len({m.name for m in library.get("video_wan2_2_14B_i2v").models}) == 6
    assert library.get("api_nano_banana_2_1_t2i").models == []
    assert library.get("api_nano_banana_2_1_t2i").open_source is False


def test_slots_point_into_the_api_form(library, catalog_reg):
    info = library.get("image_z_image_turbo")  # everything inside one subgraph, instance 57
    assert info.subgraphs
    assert slot(info, "positive") == [("57:27", "text")]
    assert slot(info, "width") == [("57:13", "width")] and info.slots["width"][0].value == 1024
    assert slot(info, "seed") == [("57:3", "seed")] and slot(info, "steps") == [("57:3", "steps")]
    prompt = library.workflow("image_z_image_turbo", to="api", registry=catalog_reg)
    for key in ("positive", "width", "height", "seed", "steps", "cfg"):
        for s in info.slots[key]:
            assert prompt[s.node]["inputs"][s.input] == s.value
    flf = library.get("video_wan2_2_14B_flf2v")
    assert slot(flf, "positive") == [("90", "text")] and slot(flf, "negative") == [("78", "text")]
    assert slot(flf, "length") == [("81", "length")] and slot(flf, "fps") == [("86", "fps")]
    assert [i.name for i in flf.inputs] == ["video_wan2_2_14B_flf2v_start_image.png",
                                            "video_wan2_2_14B_flf2v_end_image.png"]
    # a positive text also zeroed into the negative (Flux canny) is still the positive one
    assert slot(library.get("flux_canny_model_example"), "positive") == [("23", "text")]
    edit = library.get("image_qwen_image_2_1_image_edit")
    assert len(edit.slots["image"]) == 2 and slot(edit, "negative") == [("459:474", "negative_prompt")]


def test_task_counts_cover_the_library(library):
    counts = library.tasks()
    assert len(library) > 600
    assert {"t2i", "i2v", "t2v", "edit", "inpaint", "upscale", "controlnet", "3d", "audio", "llm", "api"} <= set(
        counts)
    assert sum(1 for i in library.ids() if library.get(i).task) >= len(library) - 5


# ---- search -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("words", "task"), [("inpaint", "inpaint"), ("放大", "upscale"), ("图生视频", "i2v"),
                                             ("upscale", "upscale"), ("text to video", "t2v")])
def test_search_english_and_chinese(library, words, task):
    found = library.search(words, limit=5)
    assert len(found) == 5
    assert all(task in t.tasks for t in found[:3]), [(t.id, t.tasks) for t in found]


def test_search_filters_by_task_and_tolerates_a_typo(library):
    found = library.search("wan", task="i2v", limit=10)
    assert found and all("i2v" in t.tasks for t in found)
    assert any("wan" in t.id.lower() for t in found[:3])
    assert library.search("inpaintng", limit=3)[0].task in ("inpaint", "outpaint")
    assert library.search("zzqqxxyy qqwwvv", limit=3) == []


def test_for_task_puts_runnable_primary_templates_first(library, catalog_reg):
    ranked = library.for_task("t2i", registry=catalog_reg)
    assert ranked[0].task == "t2i"
    known = [all(n in catalog_reg for n in t.nodes) for t in ranked if t.task == "t2i"]
    assert known == sorted(known, reverse=True) and known[0]
    with pytest.raises(BadRequest) as exc:
        library.for_task("text2image")
    assert exc.value.kind == "unknown_task"


# ---- workflows and errors -------------------------------------------------------------------------------
def test_workflow_in_three_forms(library, catalog_reg):
    ui = library.workflow("flux_fill_inpaint_example", to="ui")
    assert isinstance(ui["nodes"], list)
    api = library.workflow("flux_fill_inpaint_example", to="api", registry=catalog_reg)
    assert api["17"]["class_type"] == "LoadImage"
    assert api["17"]["inputs"]["image"] == "flux_fill_inpaint_example_input_image.png"
    text = library.workflow("flux_fill_inpaint_example", to="text", registry=catalog_reg)
    assert "InpaintModelConditioning(" in text and "flux_fill_inpaint_example_input_image.png" in text


def test_unknown_id_suggests_close_ones(library):
    with pytest.raises(NotFound) as exc:
        library.get("image_z_image_trbo")
    assert exc.value.kind == "template_not_found"
    assert "image_z_image_turbo" in exc.value.details["suggestions"]


def test_a_template_that_does_not_convert_is_a_structured_error(library, monkeypatch):
    import agent.templates.library as module

    monkeypatch.setattr(module, "read_workflow", lambda folder, tid: ["not", "a", "workflow"])
    with pytest.raises(BadRequest) as exc:
        library.workflow("image_z_image_turbo", to="api")
    assert exc.value.kind == "template_not_convertible"


# ---- the cache ------------------------------------------------------------------------------------------
def test_the_index_is_cached_per_package_version_and_read_back(library, catalog_reg, cache_dir):
    with using(load_settings({"data_dir": cache_dir})):
        path = _cache_path(package_version(), registry_fingerprint(catalog_reg))
        assert path.is_file()
        data = json.loads(path.read_text(encoding="utf-8"))
        data["templates"][0]["title"] = "read from the cache"
        path.write_text(json.dumps(data), encoding="utf-8")
        _LOADED.clear()
        try:
            again = load_library(catalog_reg)
            assert again.get(data["templates"][0]["id"]).title == "read from the cache"
            assert len(again) == len(library)
        finally:
            _LOADED.clear()
            _LOADED[(package_version(), registry_fingerprint(catalog_reg))] = library


# ---- CLI -----------------------------------------------------------------------------------------------------
def test_cli_lists_and_writes_a_template(library, tmp_path, capsys):
    assert templates_main(["templates", "图生视频", "--limit", "3", "--catalog", str(CATALOG)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "task", "title"] and len(table) == 4
    assert all(" i2v " in row for row in table[1:])
    assert templates_main(["templates", "inpaint", "--json", "--limit", "2", "--catalog", str(CATALOG)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and rows[0]["task"] == "inpaint"
    out = tmp_path / "wf.json"
    assert templates_main(["template", "image_z_image_turbo", "-o", str(out), "--catalog", str(CATALOG)]) == 0
    shown = capsys.readouterr().out
    assert "https://huggingface.co/Comfy-Org/z_image_turbo" in shown and "diffusion_models/" in shown
    assert json.loads(out.read_text(encoding="utf-8"))["57:27"]["class_type"] == "CLIPTextEncode"


def test_cli_refuses_an_unknown_id_in_one_line(library, capsys):
    assert templates_main(["template", "no_such_template", "--catalog", str(CATALOG)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nodeweaver: unknown template") and "Traceback" not in err


# ---- HTTP and MCP ----------------------------------------------------------------------------------------
def test_http_routes(library, catalog_reg):
    app = FastAPI()
    app.state.service = SimpleNamespace(registry=catalog_reg)
    app.include_router(router)
    with TestClient(app) as http:
        found = http.get("/api/templates", params={"q": "放大", "limit": 3})
        assert found.status_code == 200 and len(found.json()["templates"]) == 3
        assert found.json()["templates"][0]["task"] == "upscale"
        only = http.get("/api/templates", params={"task": "t2v", "limit": 5}).json()["templates"]
        assert only and all("t2v" in t["tasks"] for t in only)
        one = http.get("/api/templates/video_wan2_2_14B_flf2v", params={"to": "text"})
        assert one.status_code == 200 and one.json()["form"] == "text"
        assert "WanFirstLastFrameToVideo(" in one.json()["workflow"]
        assert one.json()["template"]["task"] == "flf2v"
        missing = http.get("/api/templates/nope_nope")
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "template_not_found"
        assert http.get("/api/templates", params={"task": "bogus"}).status_code == 422
        assert http.get("/api/templates", params={"limit": 0}).status_code == 422


def test_mcp_tools(library, catalog_reg):
    server = MCPServer("templates-test")
    register_tools(server, catalog_reg)

    async def main():
        async with Client(server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            return tools, [await client.call_tool("search_templates", {"query": "inpaint", "limit": 2}),
                           await client.call_tool("get_template", {"id": "image_z_image_turbo", "to": "api"}),
                           await client.call_tool("get_template", {"id": "image_z_image_trbo"})]

    tools, (found, got, missing) = asyncio.run(main())
    assert {"search_templates", "get_template"} <= set(tools)
    assert tools["get_template"].annotations.read_only_hint and tools["search_templates"].output_schema
    assert not found.is_error and [r["task"] for r in found.structured_content["results"]] == ["inpaint"] * 2
    assert not got.is_error and got.structured_content["workflow"]["57:3"]["class_type"] == "KSampler"
    assert got.structured_content["template"]["slots"]["seed"][0]["node"] == "57:3"
    assert missing.is_error and missing.structured_content["error"] == "template_not_found"
