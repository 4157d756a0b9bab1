"""Hardening of the compiler: error reports linear in the errors and strict JSON, no RecursionError from
nesting, and suggestions computed once per unknown class."""

from __future__ import annotations

import json
import struct
import time
import zlib
from typing import Any

import pytest

from compiler import WorkflowFormatError, format_text, parse_text, validate
from compiler.formats import load_workflow
from compiler.png import png_text_chunks, workflow_from_png
from compiler.ui_format import MAX_EXPANDED_NODES, ui_to_api
from compiler.validator import DEPENDENT_OUTPUTS_LIMIT, DETAILS_LIMIT, ValidationResult
from nodes.spec import class_object_info, json_safe


def strict(document: Any) -> bytes:
    """What an HTTP reply does with a report: strict JSON (no NaN) encoded as UTF-8."""
    return json.dumps(document, allow_nan=False, ensure_ascii=False).encode("utf-8")


def report(result: ValidationResult) -> bytes:
    """The whole error report: POST /prompt's body plus the errors as MCP and the CLI give them."""
    return strict({"error": result.comfy_error(), "node_errors": result.node_errors(),
                   "errors": [e.model_dump() for e in result.errors],
                   "warnings": [w.model_dump() for w in result.warnings]})


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def on_deep_stack(frames: int, call):
    """Run `call` under `frames` extra Python frames, as it is inside a server, so recursion shows."""
    if frames:
        return on_deep_stack(frames - 1, call)
    return call()


def bad_outputs(n: int) -> dict:
    """n output nodes, each missing its required input: n errors, n failing outputs."""
    return {str(i): {"class_type": "PreviewAny", "inputs": {}} for i in range(n)}


# ---- 2c: reports linear in the number of errors -------------------------------------------------------
@pytest.mark.parametrize("n", [8_000, pytest.param(100_000, marks=pytest.mark.slow)])  # 100,000: seconds
def test_report_size_is_linear_in_errors(registry, n):
    start = time.perf_counter()
    result = validate(bad_outputs(n), registry)
    body = report(result)
    elapsed = time.perf_counter() - start
    assert not result.valid and len(result.errors) == n
    node_errors = result.node_errors()
    assert len(node_errors) == n and node_errors["7"]["dependent_outputs"] == ["7"]
    assert len(body) / n < 1_000  # bytes per error; it was 55 kB per error at 8,000 (all outputs each)
    assert elapsed < 60  # liveness only: the old N x N report needed 7.8 GB at 100,000


def test_dependent_outputs_are_the_outputs_that_need_the_node(registry):
    wf = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": "many"}},
          "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "",
                                                              "delimiter": ""}},
          "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
          "4": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
          "5": {"class_type": "PreviewAny", "inputs": {}},
          "6": {"class_type": "PrimitiveString", "inputs": {"value": "ok"}},
          "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}}}
    result = validate(wf, registry)
    node_errors = result.node_errors()
    assert sorted(node_errors["1"]["dependent_outputs"]) == ["3", "4"]
    assert node_errors["5"]["dependent_outputs"] == ["5"]
    assert node_errors["1"]["class_type"] == "PrimitiveInt"
    assert set(result.good_outputs) == {"7"}


def test_fan_out_is_capped_with_an_exact_count(registry):
    wf = {"src": {"class_type": "PrimitiveInt", "inputs": {"value": "many"}}}
    for i in range(1_000):
        wf[f"o{i}"] = {"class_type": "PreviewAny", "inputs": {"source": ["src", 0]}}
    entry = validate(wf, registry).node_errors()["src"]
    assert len(entry["dependent_outputs"]) == DEPENDENT_OUTPUTS_LIMIT
    assert entry["dependent_outputs_count"] == 1_000 and entry["dependent_outputs_count_exact"] is True


def test_failing_chain_with_an_output_per_link_stays_linear(registry):
    """4,000 failing nodes in a chain, each with its own output: every node feeds all outputs below it."""
    n = 4_000
    wf: dict[str, Any] = {}
    for i in range(n):
        source: Any = [f"c{i - 1}", 0] if i else ""
        wf[f"c{i}"] = {"class_type": "StringConcatenate",
                       "inputs": {"string_a": source, "string_b": "", "delimiter": "", "bogus": 1}}
        wf[f"c{i}"]["inputs"]["delimiter"] = ["nowhere", 0]  # a dangling link: an error on every node
        wf[f"o{i}"] = {"class_type": "PreviewAny", "inputs": {"source": [f"c{i}", 0]}}
    result = validate(wf, registry)
    node_errors = result.node_errors()
    first = node_errors["c0"]
    assert len(first["dependent_outputs"]) == DEPENDENT_OUTPUTS_LIMIT and first["dependent_outputs"][0] == "o0"
    assert first["dependent_outputs_count"] > DEPENDENT_OUTPUTS_LIMIT
    last = node_errors[f"c{n - 1}"]
    assert last["dependent_outputs"] == [f"o{n - 1}"] and "dependent_outputs_count" not in last
    assert len(report(result)) / n < 2_000


def test_top_level_details_name_the_first_errors_and_count_the_rest(registry):
    error = validate(bad_outputs(DETAILS_LIMIT + 30), registry).comfy_error()
    assert error["type"] == "prompt_outputs_failed_validation"
    lines = error["details"].splitlines()
    assert len(lines) == DETAILS_LIMIT + 1 and "30 more error(s)" in lines[-1]


def test_hand_built_result_still_gives_a_capped_report():
    from compiler.errors import WorkflowError

    result = ValidationResult(valid=False, outputs=[str(i) for i in range(500)], good_outputs=[],
                              errors=[WorkflowError(type="required_input_missing", message="m", node_id="1")])
    entry = result.node_errors()["1"]
    assert len(entry["dependent_outputs"]) == DEPENDENT_OUTPUTS_LIMIT and entry["dependent_outputs_count"] == 500


# ---- 4: strict JSON whatever the input holds ------------------------------------------------------------
def test_inf_nan_and_infinity_literals_give_a_strict_json_report(registry):
    text = ('{"1": {"class_type": "PrimitiveFloat", "inputs": {"value": 1e400}},'
            ' "2": {"class_type": "PrimitiveInt", "inputs": {"value": NaN}},'
            ' "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0], "extra": -Infinity}},'
            ' "4": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},'
            ' "5": {"class_type": "SaveImage", "inputs": {"images": Infinity, "filename_prefix": "x"}}}')
    result = validate(load_workflow(text, registry).prompt, registry)
    assert not result.valid
    body = json.loads(report(result))
    received = {e["node_id"]: e["extra_info"].get("received_value") for e in body["errors"]}
    assert received["1"] == "inf" and received["2"] == "nan" and received["5"] == "inf"


def test_lone_surrogates_anywhere_give_a_utf8_report(registry):
    wf = {"1\ud800": {"class_type": "PrimitiveInt", "inputs": {"value": "x\udc00", "in\ud800put": 1}},
          "2": {"class_type": "Unknown\ud800", "inputs": {}},
          "3": {"class_type": "PreviewAny", "inputs": {"source": ["1\ud800", 0]}}}
    result = validate(wf, registry)
    assert not result.valid  # the bad value is still an error of a node that an output needs
    assert ("1\ud800", "invalid_input_type") in {(e.node_id, e.type) for e in result.errors}
    body = report(result).decode("utf-8")
    node_errors = json.loads(body)["node_errors"]
    assert node_errors["1\\ud800"]["dependent_outputs"] == ["3"]  # kept, written as an escape
    assert node_errors["2"]["class_type"] == "Unknown\\ud800"
    str(result.errors[0]).encode("utf-8")


@pytest.mark.parametrize("node", [
    {"class_type": "PrimitiveInt", "inputs": {"value": nested(990)}},  # invalid_input_type echoes the value
    {"class_type": "StringConcatenate", "inputs": {"string_a": nested(990), "string_b": "", "delimiter": ""}},
    {"class_type": "RegexExtract", "inputs": {"string": "x", "regex_pattern": "x", "mode": {"a": nested(990)},
                                              "case_insensitive": True, "multiline": False, "dotall": False,
                                              "group_index": 1}},
], ids=["int", "link", "combo"])
def test_nesting_990_deep_gives_a_structured_report(registry, node):
    wf = {"1": node, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = on_deep_stack(150, lambda: validate(wf, registry))
    assert not result.valid and result.errors[0].node_id == "1"
    body = json.loads(on_deep_stack(150, lambda: report(result)))
    assert "nested deeper than" in json.dumps(body["errors"][0]["extra_info"])


def test_deep_meta_and_extra_data_are_stored_safely():
    """The job store keeps prompts (with their _meta) and extra_data through json_safe."""
    prompt = {"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}, "_meta": {"title": nested(990)}}}
    for document in (prompt, {"extra_pnginfo": {"workflow": nested(990, {"k": float("nan")})}}):
        text = on_deep_stack(150, lambda d=document: json.dumps(json_safe(d), allow_nan=False))
        assert "nested deeper than 200 levels" in text


def test_json_safe_is_iterative_and_bounded():
    deep = nested(5_000)
    copy = on_deep_stack(300, lambda: json_safe(deep))
    text = json.dumps(copy)
    assert "nested deeper than 200 levels" in text and text.count("[") == 200
    loop: list[Any] = [1]
    loop.append(loop)
    assert json_safe(loop) == [1, "<circular reference>"]
    assert json_safe({"a": float("nan"), 2: ("x\ud800", float("-inf"))}) == {"a": "nan", "2": ["x\\ud800", "-inf"]}


def test_object_info_copies_shared_options_for_each_input():
    shared = {"default": 1.0, "max": float("inf")}

    class Shared:
        RETURN_TYPES = ("FLOAT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"a": ("FLOAT", shared), "b": ("FLOAT", shared)}}

        def run(self, a, b):
            return (a + b,)

    info = class_object_info("Shared", Shared)
    assert info["input"]["required"]["a"] == ["FLOAT", {"default": 1.0, "max": "inf"}]
    assert info["input"]["required"]["b"] == info["input"]["required"]["a"]
    strict(info)


# ---- 4: text form and loading --------------------------------------------------------------------------
def test_text_form_with_990_signs_reads_the_number(registry):
    text = "n1 = PrimitiveInt(value=" + "-" * 990 + "1)\nn2 = PrimitiveInt(value=" + "-" * 991 + "7)\n"
    prompt = on_deep_stack(150, lambda: parse_text(text, registry))
    assert prompt["1"]["inputs"]["value"] == 1 and prompt["2"]["inputs"]["value"] == -7


@pytest.mark.parametrize("text", [
    "n1 = PrimitiveInt(value=" + "[" * 990 + "]" * 990 + ")\n",
    "n1 = PrimitiveInt(value=" + "[" * 150 + "]" * 150 + ")\n",
    "n1 = PrimitiveInt(value=" + "{'a': " * 120 + "1" + "}" * 120 + ")\n",
    "n1 = PrimitiveInt(value=" + "f(" * 150 + ")" * 150 + ")\n",
    "n1 = " + "a." * 3_000 + "B(value=1)\n",
    "n1 = PrimitiveInt(value=-[1])\n",
])
def test_deep_text_form_gives_a_format_error(registry, text):
    with pytest.raises(WorkflowFormatError) as caught:
        on_deep_stack(150, lambda: parse_text(text, registry))
    assert caught.value.errors[0].type == "text_form_syntax"
    strict([e.model_dump() for e in caught.value.errors])


def test_text_form_nesting_limit_is_the_same_both_ways(registry):
    fits = {"1": {"inputs": {"value": nested(100)}, "class_type": "PrimitiveInt"}}
    assert parse_text(format_text(fits, registry), registry) == fits
    with pytest.raises(WorkflowFormatError):
        format_text({"1": {"inputs": {"value": nested(101)}, "class_type": "PrimitiveInt"}}, registry)


@pytest.mark.parametrize("depth", [990, 5_000])
def test_deeply_nested_json_text_is_a_format_error(registry, depth):
    text = '{"1": {"class_type": "PreviewAny", "inputs": {"source": ' + "[" * depth + "]" * depth + "}}}"
    with pytest.raises(WorkflowFormatError) as caught:
        on_deep_stack(100, lambda: load_workflow(text, registry))
    assert "nested too deeply" in caught.value.errors[0].message


def test_over_long_json_integer_is_a_format_error(registry):
    with pytest.raises(WorkflowFormatError):
        load_workflow('{"1": {"class_type": "PrimitiveInt", "inputs": {"value": ' + "9" * 5_000 + "}}}", registry)


# ---- PNG and UI workflows ------------------------------------------------------------------------------
def _png(*chunks: tuple[bytes, bytes]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in [*chunks, (b"IEND", b"")]:
        out += struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))
    return out


def test_png_text_bomb_and_deep_json_are_refused(registry):
    bomb = zlib.compress(b"{" * (80 * 1024 * 1024), 9)
    assert "prompt" not in png_text_chunks(_png((b"zTXt", b"prompt\x00\x00" + bomb)))
    deep = b"prompt\x00" + b"[" * 5_000 + b"]" * 5_000
    with pytest.raises(WorkflowFormatError):
        on_deep_stack(100, lambda: workflow_from_png(_png((b"tEXt", deep))))


def _subgraph_bomb(levels: int) -> dict:
    """Subgraph k holds two instances of subgraph k+1: 2**levels nodes once expanded."""
    subs = []
    for k in range(levels):
        # instance ids differ per level: the converter skips an id already on the path as recursive
        inner = [{"id": 10 * k + 11, "type": f"s{k + 1}"}, {"id": 10 * k + 12, "type": f"s{k + 1}"}] \
            if k + 1 < levels else \
            [{"id": 1, "type": "PrimitiveInt", "widgets_values": [1]},
             {"id": 2, "type": "PrimitiveInt", "widgets_values": [2]}]
        subs.append({"id": f"s{k}", "nodes": inner, "links": []})
    return {"nodes": [{"id": 1, "type": "s0"}], "links": [], "definitions": {"subgraphs": subs}}


def test_subgraph_expansion_is_bounded(registry):
    assert MAX_EXPANDED_NODES < 2 ** 30
    with pytest.raises(WorkflowFormatError) as caught:
        ui_to_api(_subgraph_bomb(30), registry)
    assert "expand to more than" in caught.value.errors[0].message
    prompt, _ = ui_to_api(_subgraph_bomb(4), registry)
    assert len(prompt) == 16


def test_ui_workflow_with_junk_fields_converts_or_fails_cleanly(registry):
    deep = nested(990)
    wf = {"nodes": [{"id": 1, "type": deep, "inputs": [{"name": deep, "link": 1}]},
                    {"id": deep, "type": "PrimitiveInt"},
                    {"id": 2, "type": "PreviewAny", "inputs": [{"name": "source", "link": 9}], "mode": deep}],
          "links": [[9, 1, 1e400, 2, 0, deep], [1, 1, 0, 1, 0, "INT"], True],
          "definitions": {"subgraphs": [{"id": deep}, {"id": "x", "links": True, "nodes": 5}]}}
    prompt, warnings = on_deep_stack(150, lambda: ui_to_api(wf, registry))
    strict(prompt)
    assert prompt["2"]["class_type"] == "PreviewAny" and "source" not in prompt["2"]["inputs"]
    assert all(w.type == "conversion_warning" for w in warnings)


# ---- suggestions once per unknown class -----------------------------------------------------------------
def test_suggestions_are_computed_once_per_unknown_class(registry, monkeypatch):
    calls: list[str] = []
    registry.suggest("warm")  # builds the search index
    index = registry._index
    original = index.close_names
    monkeypatch.setattr(index, "close_names", lambda name, limit=3: calls.append(name) or original(name, limit))
    wf = {str(i): {"class_type": f"PrimitiveStrin{i % 5}", "inputs": {}} for i in range(500)}
    wf["out"] = {"class_type": "PreviewAny", "inputs": {"source": ["0", 0]}}
    result = validate(wf, registry)
    assert sorted(calls) == [f"PrimitiveStrin{k}" for k in range(5)]
    missing = [e for e in result.errors if e.type == "missing_node_type"]
    assert len(missing) == 500 and "PrimitiveString" in missing[0].extra_info["suggestions"]
    validate(wf, registry)
    assert len(calls) == 5  # the registry remembers them between requests


def test_suggestions_forget_when_the_registry_changes(registry):
    assert "Shouted" not in registry.suggest("Shoutedd")

    class Shouted:
        RETURN_TYPES = ("STRING",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return ("",)

    registry.register("Shouted", Shouted)
    assert registry.suggest("Shoutedd") == ["Shouted"]
    assert registry.suggest("x" * 10_000) == []
