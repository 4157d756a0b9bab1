"""The registry: packs, the seed example node, /object_info export and import, search, schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DATA

from nodes.registry import NodeRegistry
from nodes.spec import NodeSpec

CORE = {"PrimitiveString", "PrimitiveStringMultiline", "PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean",
        "StringConcatenate", "StringReplace", "RegexMatch", "RegexExtract", "TextTemplate", "LoadText",
        "SaveText", "PreviewAny", "ComfySwitchNode"}


def test_core_pack_loads(registry):
    assert set(registry.names()) >= CORE
    assert registry.load_errors == []
    assert all(registry.is_executable(n) for n in CORE)


def test_seed_example_node_loads_unchanged(registry):
    registry.load_custom_nodes([DATA / "custom_nodes"])
    assert registry.load_errors == []
    assert "Example" in registry
    spec = registry.spec("Example")
    assert spec.display_name == "Example Node"
    assert [i.name for i in spec.inputs] == ["image", "int_field", "float_field", "print_to_screen", "string_field"]
    int_field = spec.input("int_field")
    assert (int_field.type, int_field.options["min"], int_field.options["max"], int_field.lazy) == ("INT", 0, 4096, True)
    assert spec.input("print_to_screen").choices == ["enable", "disable"]
    assert spec.input("image").is_widget is False
    assert [o.type for o in spec.outputs] == ["IMAGE"]
    # its aiohttp route was registered on our PromptServer stand-in
    from server import PromptServer

    assert any(getattr(r, "path", "") == "/hello" for r in PromptServer.instance.routes)
    # the lazy protocol is the class's own
    cls = registry.get_class("Example")
    assert cls().check_lazy_status(None, None, None, None, "enable") == ["int_field", "float_field", "string_field"]


def test_package_folder_pack_with_relative_imports_and_folder_paths(registry, isolated_folders):
    (isolated_folders / "models" / "checkpoints").mkdir()
    (isolated_folders / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"x")
    registry.load_custom_nodes([DATA / "custom_nodes"])
    assert {"ShoutText", "ListCheckpoints"} <= set(registry.names())
    assert registry.spec("ListCheckpoints").input("ckpt_name").choices == ["tiny.safetensors"]
    shout = registry.spec("ShoutText")
    assert shout.input("anything").type == "*" and shout.input("unique_id").section == "hidden"
    assert shout.outputs[0].name == "shouted"


def test_broken_pack_is_reported_and_others_load(registry):
    registry.load_custom_nodes([DATA / "broken_nodes"])
    assert "Echo" in registry
    by_pack = {e.pack: e.error for e in registry.load_errors}
    assert "this_module_does_not_exist" in by_pack["broken_pack"]
    assert "NotANode" in by_pack["good_pack"] and "NotANode" not in registry


def test_custom_nodes_from_environment(monkeypatch):
    from nodes.registry import default_registry

    monkeypatch.setenv("NODEWEAVER_CUSTOM_NODES", str(DATA / "broken_nodes"))
    reg = default_registry(fresh=True)
    assert "Echo" in reg and any(e.pack == "broken_pack" for e in reg.load_errors)


def _shape(value):
    """The JSON shape of a value: types all the way down, with list items merged."""
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def test_object_info_export_has_comfyui_keys_and_shapes(registry, catalog_data):
    registry.load_custom_nodes([DATA / "custom_nodes"])
    ours = json.loads(json.dumps(registry.object_info()))
    theirs_keys: dict[str, set[str]] = {}
    for entry in catalog_data.values():
        for key, value in entry.items():
            theirs_keys.setdefault(key, set()).add(_shape(value))
    required = set.intersection(*(set(e) for e in catalog_data.values()))
    for name, entry in ours.items():
        assert required <= set(entry), f"{name} lacks {required - set(entry)}"
        for key, value in entry.items():
            assert key in theirs_keys, f"{name}: key {key!r} is not in ComfyUI's object_info"
            assert _shape(value) in theirs_keys[key], f"{name}.{key} has shape {_shape(value)}"
        assert entry["input_order"] == {s: list(v) for s, v in entry["input"].items()}
        assert len(entry["output"]) == len(entry["output_is_list"]) == len(entry["output_name"])
        # every input spec is [type] or [type, options], as ComfyUI's
        for section in ("required", "optional"):
            for spec in entry["input"].get(section, {}).values():
                assert isinstance(spec, list) and 1 <= len(spec) <= 2
                assert isinstance(spec[0], str | list)
    # and it reads back to the same specs
    for name, entry in ours.items():
        assert NodeSpec.from_object_info(entry).name == name


def test_import_catalog_nodes_are_validatable_not_executable(catalog_registry, catalog_data):
    assert len(catalog_data) == 496
    assert "LatentCut" in catalog_registry and not catalog_registry.is_executable("LatentCut")
    last = catalog_registry.spec("LatentCut")
    assert (last.input("index").options["min"], last.executable) == (-16384, False)
    assert "KSampler" in catalog_registry and catalog_registry.is_executable("KSampler")  # ours wins
    # V3 COMBO inputs ("COMBO", {"options": [...]}) are read as choices
    assert catalog_registry.spec("RegexExtract").input("mode").choices  # ours wins: executable
    v3 = [n for n, e in catalog_data.items()
          if not catalog_registry.is_executable(n)
          and any(isinstance(v, list) and len(v) == 2 and v[0] == "COMBO" and v[1].get("options")
                  for v in e["input"].get("required", {}).values())]
    assert v3
    some = catalog_registry.spec(v3[0])
    assert any(i.type == "COMBO" and i.choices for i in some.inputs)
    # a catalog entry exports exactly as it came
    assert catalog_registry.node_info("LatentCut") == catalog_data["LatentCut"]


def test_search_english_chinese_and_by_type(catalog_registry):
    top = lambda q, **kw: [h.name for h in catalog_registry.search(q, limit=5, **kw)]  # noqa: E731
    assert top("regex extract")[0] == "RegexExtract"
    assert "KSampler" in top("sampler")
    assert "SaveText" in top("保存文本")
    assert "LoadImage" in top("加载图片")
    assert any("Upscale" in n for n in top("放大图片"))
    assert "CheckpointLoaderSimple" in top("load checkpoint")
    producers = [h.name for h in catalog_registry.producers("LATENT", limit=500)]
    assert "EmptyLatentImage" in producers and "SaveImage" not in producers
    consumers = [h.name for h in catalog_registry.consumers("IMAGE", limit=500)]
    assert "SaveImage" in consumers
    both = top("", consumes="STRING", produces="BOOLEAN")
    assert "RegexMatch" in both and "SaveImage" not in both
    assert catalog_registry.search("zzqqxx") == []
    assert catalog_registry.search("please use the zzqqxx of this") == []  # stopwords alone match nothing


def test_describe_is_compact_and_complete(catalog_registry):
    text = catalog_registry.describe("KSampler")
    assert text.startswith("KSampler (KSampler) [category: sampling]")
    assert "steps: INT = 20 [1 .. 10000]" in text
    assert "model: MODEL" in text and "(link from another node)" in text
    assert "[0] LATENT: LATENT" in text
    assert "text form: n1 = KSampler(" in text
    from nodes.describe import MAX_CHOICES

    long_lists = [name for name in catalog_registry.names()
                  if any(len(i.choices or []) > MAX_CHOICES for i in catalog_registry.spec(name).inputs)]
    assert long_lists, "the shared catalog has nodes with long choice lists"
    assert "(+" in catalog_registry.describe(long_lists[0])  # long choice lists are shortened


def test_suggestions_for_misspelt_names(catalog_registry):
    assert catalog_registry.suggest("KSamplr")[0] == "KSampler"
    assert catalog_registry.suggest("ksampler") == ["KSampler"]


def test_register_rejects_non_nodes():
    reg = NodeRegistry()
    import pytest

    class NoFunction:
        RETURN_TYPES = ()

        @classmethod
        def INPUT_TYPES(cls):
            return {}

    with pytest.raises(TypeError, match="FUNCTION"):
        reg.register("NoFunction", NoFunction)


def test_models_of_an_existing_comfyui_installation_are_listed(registry, tmp_path, monkeypatch, isolated_folders):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "checkpoints" / "sdxl").mkdir(parents=True)
    (comfy / "models" / "checkpoints" / "sdxl" / "juggernaut.safetensors").write_bytes(b"x")
    (comfy / "models" / "unet").mkdir()
    (comfy / "models" / "unet" / "flux.sft").write_bytes(b"x")
    (isolated_folders / "models" / "checkpoints").mkdir()
    (isolated_folders / "models" / "checkpoints" / "own.ckpt").write_bytes(b"x")
    from runtime import folders

    assert folders.model_files("checkpoints") == ["own.ckpt"]
    monkeypatch.setenv("NODEWEAVER_COMFYUI_DIR", str(comfy))
    assert folders.model_files("checkpoints") == ["own.ckpt", "sdxl/juggernaut.safetensors"]
    assert folders.model_files("diffusion_models") == ["flux.sft"]  # ComfyUI's legacy unet/ folder
    assert folders.model_path("checkpoints", "sdxl/juggernaut.safetensors") is not None
    assert "sdxl/juggernaut.safetensors" in registry.spec("CheckpointLoaderSimple").input("ckpt_name").choices


def test_catalog_loaders_list_this_installations_files(isolated_folders):
    """An imported catalog from a ComfyUI without models still validates workflows naming installed files."""
    from compiler import validate
    from nodes.registry import NodeRegistry

    catalog = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "comfyui_object_info.json"
    if not catalog.is_file():
        pytest.skip("no ComfyUI catalog fixture")
    registry = NodeRegistry()
    registry.import_catalog_file(catalog)
    workflow = {"1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "4x-UltraSharp.pth"}},
                "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
                "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0],
                                                                        "image": ["2", 0]}},
                "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}}}
    before = validate(workflow, registry)
    assert {e.type for e in before.errors} == {"value_not_in_list"}
    (isolated_folders / "models" / "upscale_models").mkdir()
    (isolated_folders / "models" / "upscale_models" / "4x-UltraSharp.pth").write_bytes(b"placeholder")
    (isolated_folders / "input" / "photo.png").write_bytes(b"placeholder")
    assert validate(workflow, registry).valid
    info = registry.node_info("UpscaleModelLoader")["input"]["required"]["model_name"]
    assert "4x-UltraSharp.pth" in (info[0] if isinstance(info[0], list) else info[1]["options"])


def test_a_diffusers_model_folder_is_listed_by_its_name(isolated_folders):
    """A ControlNet saved by diffusers (config.json naming its class + weights) is one choice, not its files."""
    from runtime import folders

    folder = isolated_folders / "models" / "controlnet" / "canny-sd15"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"placeholder")
    (isolated_folders / "models" / "controlnet" / "depth.safetensors").write_bytes(b"placeholder")
    assert folders.model_files("controlnet") == ["canny-sd15", "depth.safetensors"]
