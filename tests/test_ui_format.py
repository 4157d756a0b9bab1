"""UI-format workflows → API format: widgets, links, reroutes, primitives, bypass, mute, subgraphs."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from compiler import validate
from compiler.formats import load_workflow, to_api_workflow


def node(nid, ntype, widgets=None, inputs=None, outputs=None, mode=0, title=None):
    n = {"id": nid, "type": ntype, "mode": mode, "inputs": inputs or [], "outputs": outputs or [],
         "widgets_values": widgets if widgets is not None else [], "properties": {}}
    if title:
        n["title"] = title
    return n


def inp(name, typ, link, widget=False):
    d = {"name": name, "type": typ, "link": link}
    if widget:
        d["widget"] = {"name": name}
    return d


def test_default_style_graph_with_seed_control_values(catalog_registry):
    ui = {"nodes": [
        node(4, "CheckpointLoaderSimple", ["m.safetensors"]),
        node(5, "EmptyLatentImage", [512, 768, 2]),
        node(6, "CLIPTextEncode", ["a fox"], [inp("clip", "CLIP", 1)], title="Positive"),
        node(7, "CLIPTextEncode", ["blurry"], [inp("clip", "CLIP", 2)]),
        node(3, "KSampler", [42, "randomize", 20, 7.5, "euler", "normal", 1.0],
             [inp("model", "MODEL", 3), inp("positive", "CONDITIONING", 4), inp("negative", "CONDITIONING", 5),
              inp("latent_image", "LATENT", 6)]),
        node(8, "VAEDecode", [], [inp("samples", "LATENT", 7), inp("vae", "VAE", 8)]),
        node(9, "SaveImage", ["ComfyUI"], [inp("images", "IMAGE", 9)]),
        node(10, "Note", ["just a note"]),
        node(11, "MarkdownNote", ["# doc"]),
    ], "links": [[1, 4, 1, 6, 0, "CLIP"], [2, 4, 1, 7, 0, "CLIP"], [3, 4, 0, 3, 0, "MODEL"],
                 [4, 6, 0, 3, 1, "CONDITIONING"], [5, 7, 0, 3, 2, "CONDITIONING"], [6, 5, 0, 3, 3, "LATENT"],
                 [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]],
        "groups": [{"title": "g"}], "version": 0.4}
    prompt = to_api_workflow(ui, catalog_registry).prompt
    assert set(prompt) == {"3", "4", "5", "6", "7", "8", "9"}
    assert prompt["3"]["inputs"] == {"seed": 42, "steps": 20, "cfg": 7.5, "sampler_name": "euler",
                                     "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                     "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    assert prompt["5"]["inputs"] == {"width": 512, "height": 768, "batch_size": 2}
    assert prompt["6"]["_meta"] == {"title": "Positive"}
    assert prompt["7"]["_meta"] == {"title": "CLIP Text Encode (Prompt)"}
    result = validate(prompt, catalog_registry)
    assert {e.type for e in result.errors} == {"value_not_in_list"}  # no checkpoint installed, nothing else


def test_reroute_primitive_widget_link_bypass_and_mute(registry):
    ui = {"nodes": [
        node(1, "PrimitiveString", ["hello"]),
        node(2, "Reroute", [], [inp("", "*", 1)]),
        node(3, "Reroute", [], [inp("", "*", 2)]),
        node(4, "PrimitiveNode", ["  world"]),
        node(5, "StringConcatenate", ["ignored", "also ignored", "-"],
             [inp("string_a", "STRING", 3, widget=True), inp("string_b", "STRING", 4, widget=True)]),
        node(6, "StringReplace", ["", "o", "0"], [inp("string", "STRING", 5, widget=True)], mode=4),  # bypassed
        node(7, "PreviewAny", [], [inp("source", "*", 6)]),
        node(8, "PreviewAny", [], [inp("source", "*", 7)], mode=2),  # muted
    ], "links": [[1, 1, 0, 2, 0, "STRING"], [2, 2, 0, 3, 0, "STRING"], [3, 3, 0, 5, 0, "STRING"],
                 [4, 4, 0, 5, 1, "STRING"], [5, 5, 0, 6, 0, "STRING"], [6, 6, 0, 7, 0, "STRING"],
                 [7, 5, 0, 8, 0, "STRING"]]}
    prompt = to_api_workflow(ui, registry).prompt
    assert set(prompt) == {"1", "5", "7"}
    assert prompt["5"]["inputs"] == {"string_a": ["1", 0], "string_b": "  world", "delimiter": "-"}
    assert prompt["7"]["inputs"] == {"source": ["5", 0]}  # the bypassed StringReplace is passed through
    assert validate(prompt, registry).valid


def _subgraph_def(sid: str) -> dict:
    """A subgraph: input 'text' → StringConcatenate(text, suffix widget) → output 'joined'."""
    return {
        "id": sid, "name": "Suffixer",
        "inputs": [{"id": "i1", "name": "text", "type": "STRING", "linkIds": [1]},
                   {"id": "i2", "name": "delimiter", "type": "STRING", "linkIds": [3]}],
        "outputs": [{"id": "o1", "name": "joined", "type": "STRING", "linkIds": [2]}],
        "nodes": [node(1, "StringConcatenate", ["", "!", "+"],
                       [inp("string_a", "STRING", 1, widget=True), inp("delimiter", "STRING", 3, widget=True)])],
        "links": [{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "STRING"},
                  {"id": 2, "origin_id": 1, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "STRING"},
                  {"id": 3, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1,
                   "type": "STRING"}],
    }


def test_subgraphs_are_flattened_with_path_ids(registry):
    sid = "0f79b7f9-d214-4587-b475-bc429519b976"
    outer = _subgraph_def(sid)
    ui = {"nodes": [
        node(1, "PrimitiveString", ["hi"]),
        node(2, sid, ["ignored: linked", "::"], [inp("text", "STRING", 10, widget=True)], [{"name": "joined", "links": [11]}]),
        node(3, sid, [], [inp("text", "STRING", 12, widget=True)]),
        node(4, "PreviewAny", [], [inp("source", "*", 13)]),
    ], "links": [[10, 1, 0, 2, 0, "STRING"], [11, 2, 0, 3, 0, "STRING"], [13, 3, 0, 4, 0, "STRING"],
                 [12, 2, 0, 3, 0, "STRING"]],
        "definitions": {"subgraphs": [outer]}}
    prompt = to_api_workflow(ui, registry).prompt
    assert set(prompt) == {"1", "2:1", "3:1", "4"}
    assert prompt["2:1"]["inputs"] == {"string_a": ["1", 0], "string_b": "!", "delimiter": "::"}
    # instance 3 has no widget values: the inner widget's own value stays
    assert prompt["3:1"]["inputs"] == {"string_a": ["2:1", 0], "string_b": "!", "delimiter": "+"}
    assert prompt["4"]["inputs"]["source"] == ["3:1", 0]
    assert validate(prompt, registry).valid


def test_nested_subgraphs(registry):
    inner_id, outer_id = "inner-sg", "outer-sg"
    inner = _subgraph_def(inner_id)
    outer = {
        "id": outer_id, "name": "Wrapper",
        "inputs": [{"id": "x", "name": "text", "type": "STRING", "linkIds": [1]}],
        "outputs": [{"id": "y", "name": "out", "type": "STRING", "linkIds": [2]}],
        "nodes": [node(7, inner_id, [], [inp("text", "STRING", 1)])],
        "links": [{"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 7, "target_slot": 0, "type": "STRING"},
                  {"id": 2, "origin_id": 7, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "STRING"}],
    }
    ui = {"nodes": [node(1, "PrimitiveString", ["deep"]), node(5, outer_id, [], [inp("text", "STRING", 1)]),
                    node(6, "PreviewAny", [], [inp("source", "*", 2)])],
          "links": [[1, 1, 0, 5, 0, "STRING"], [2, 5, 0, 6, 0, "STRING"]],
          "definitions": {"subgraphs": [outer, inner]}}
    prompt = to_api_workflow(ui, registry).prompt
    assert set(prompt) == {"1", "5:7:1", "6"}
    assert prompt["5:7:1"]["inputs"]["string_a"] == ["1", 0]
    assert prompt["6"]["inputs"]["source"] == ["5:7:1", 0]


def test_broken_ui_links_warn_and_do_not_crash(registry):
    ui = {"nodes": [node(1, "PreviewAny", [], [inp("source", "*", 99)]), node(2, "Mystery", [1, 2, 3])],
          "links": [[1, 2, 3], "junk"]}
    loaded = to_api_workflow(ui, registry)
    assert loaded.prompt["1"]["inputs"] == {}
    messages = " ".join(w.message for w in loaded.warnings)
    assert "link 99 is missing" in messages and "could not be matched" in messages


def _templates_dir() -> Path:
    mod = pytest.importorskip("comfyui_workflow_templates_json")
    return Path(os.path.dirname(mod.__file__)) / "templates"


def test_all_comfyui_templates_convert_and_validate_without_crash(catalog_registry):
    folder = _templates_dir()
    counts: Counter = Counter()
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(data, dict) and isinstance(data.get("nodes"), list)):
            continue
        loaded = load_workflow(path, catalog_registry)
        assert loaded.format == "ui"
        assert all(isinstance(k, str) and isinstance(v["class_type"], str) for k, v in loaded.prompt.items())
        result = validate(loaded.prompt, catalog_registry)
        counts["templates"] += 1
        counts["valid"] += result.valid
        assert all(e.type for e in result.errors)
    assert counts["templates"] == 644
    assert counts["valid"] >= 10  # the rest need models absent here or nodes newer than the catalog
