"""The compact text form: compiles to API JSON, prints back, round-trip exact, clear syntax errors."""

from __future__ import annotations

import pytest

from compiler import WorkflowFormatError, format_text, parse_text, validate

TEXT = '''\
greeting = PrimitiveString(value="你好")
n2 = TextTemplate(template="[g], {name}!", values="name=小明")
n3 = StringReplace(string=n2.STRING, find="[g]", replace=greeting.STRING)  # Fill greeting
n4 = PreviewAny(source=n3.STRING)
'''


def test_text_compiles_to_api_and_validates(registry):
    prompt = parse_text(TEXT, registry)
    assert prompt["2"] == {"inputs": {"template": "[g], {name}!", "values": "name=小明"}, "class_type": "TextTemplate"}
    assert prompt["3"]["inputs"]["replace"] == ["greeting", 0]
    assert prompt["3"]["_meta"] == {"title": "Fill greeting"}
    assert prompt["4"]["inputs"]["source"] == ["3", 0]
    assert validate(prompt, registry).valid


def test_round_trip_exact_both_ways(registry):
    prompt = parse_text(TEXT, registry)
    text = format_text(prompt, registry)
    assert text == TEXT
    assert parse_text(text, registry) == prompt


def test_round_trip_of_awkward_ids_names_and_values(catalog_registry):
    prompt = {
        "12:3": {"inputs": {"ckpt_name": "a \"quoted\"\nname.safetensors"}, "class_type": "CheckpointLoaderSimple"},
        "a-b": {"inputs": {"text": "x", "clip": ["12:3", 1]}, "class_type": "CLIPTextEncode",
                "_meta": {"title": "Pos", "extra": 1}},
        "class": {"inputs": {"value": -3}, "class_type": "PrimitiveInt", "_meta": {"title": " padded "}},
        "n7": {"inputs": {"x": [1, 2.5, None, True, {"k": "v"}], "y": float("inf")}, "class_type": "Custom Node (x)"},
        "node": {"inputs": {"source": ["n7", 0], "other": ["missing", 0]}, "class_type": "PreviewAny"},
    }
    text = format_text(prompt, catalog_registry)
    assert "n12_3 = CheckpointLoaderSimple(" in text
    assert 'node["a-b"] = CLIPTextEncode(text="x", clip=n12_3.CLIP, _meta=' in text
    assert 'Node["Custom Node (x)"](' in text
    back = parse_text(text, catalog_registry)
    assert back == prompt
    assert format_text(back, catalog_registry) == text


def test_output_names_resolve_case_insensitively_and_by_type(catalog_registry):
    text = '''ckpt = CheckpointLoaderSimple(ckpt_name="m.safetensors")
pos = CLIPTextEncode(text="fox", clip=ckpt.clip)
dec = VAEDecode(samples=lat, vae=ckpt.VAE)
lat = EmptyLatentImage(width=512, height=512, batch_size=1)
'''
    prompt = parse_text(text, catalog_registry)
    assert prompt["pos"]["inputs"]["clip"] == ["ckpt", 1]
    assert prompt["dec"]["inputs"]["samples"] == ["lat", 0]  # forward reference, single output


@pytest.mark.parametrize("bad, needle", [
    ("x = ", "not valid text form"),
    ("x = 5", "must be a node call"),
    ("print('hi')", "each statement must be"),
    ("x = PrimitiveString('a')", "by name"),
    ("x = PrimitiveString(value=a.b.c)", "unsupported value"),
    ("x = PrimitiveString(value=1)\nx = PrimitiveString(value=2)", "defined twice"),
    ("x = PreviewAny(source=ghost.STRING)", "ghost is not defined"),
    ("s = PrimitiveString(value='a')\nx = PreviewAny(source=s.NOPE)", "has no output 'NOPE'"),
    ("x = PrimitiveString(value=open('f'))", "unsupported value"),
    ("x = PrimitiveString(value=1, value=2)", "given twice"),
    ("import os", "each statement must be"),
])
def test_syntax_errors_are_structured_with_lines(registry, bad, needle):
    with pytest.raises(WorkflowFormatError) as info:
        parse_text(bad, registry)
    err = info.value.errors[0]
    assert err.type == "text_form_syntax"
    assert needle in err.message
