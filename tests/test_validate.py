"""Validation: every ComfyUI error type, NodeWeaver's additions, plans, and no depth limit."""

from __future__ import annotations

import pytest

from compiler import validate


def chain(n: int) -> dict:
    wf = {"0": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}
    for i in range(1, n):
        wf[str(i)] = {"class_type": "StringConcatenate",
                      "inputs": {"string_a": [str(i - 1), 0], "string_b": "y", "delimiter": ""}}
    wf["out"] = {"class_type": "PreviewAny", "inputs": {"source": [str(n - 1), 0]}}
    return wf


def types(result) -> list[str]:
    return [e.type for e in result.errors]


def one(result, kind: str):
    found = [e for e in result.errors if e.type == kind]
    assert found, f"no {kind} in {types(result)}"
    return found[0]


def test_valid_workflow_compiles_to_plan_in_dependency_order(registry):
    wf = {
        "9": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "5": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["2", 0],
                                                            "delimiter": ", "}},
        "2": {"class_type": "PrimitiveString", "inputs": {"value": "b"}},
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "a"}},
        "7": {"class_type": "PrimitiveInt", "inputs": {"value": 3}},  # no output needs it
    }
    result = validate(wf, registry)
    assert result.valid and result.errors == []
    order = result.plan.order
    assert set(order) == {"9", "5", "2", "1"}
    assert order.index("1") < order.index("5") and order.index("2") < order.index("5") < order.index("9")
    assert result.plan.outputs == ["9"]
    assert [w.node_id for w in result.warnings if w.type == "unreachable_node"] == ["7"]


def test_literals_are_converted_like_comfyui(registry):
    wf = {"1": {"class_type": "RegexExtract", "inputs": {
        "string": 5, "regex_pattern": "a", "mode": "First Match", "case_insensitive": "false",
        "multiline": 0, "dotall": True, "group_index": "3"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = validate(wf, registry)
    assert result.valid, result.errors
    inputs = result.plan.prompt["1"]["inputs"]
    assert inputs["string"] == "5" and inputs["group_index"] == 3
    assert inputs["case_insensitive"] is False and inputs["multiline"] is False


def test_every_problem_is_reported_at_once(registry):
    wf = {
        "1": {"class_type": "PrimitiveStrin", "inputs": {"value": "a"}},
        "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": ["3", 0]}},
        "3": {"class_type": "PrimitiveInt", "inputs": {"value": "many"}},
        "4": {"class_type": "RegexExtract", "inputs": {"string": ["2", 0], "regex_pattern": "x", "mode": "Every",
                                                       "group_index": -1}},
        "5": {"class_type": "RegexExtract", "inputs": {"string": ["2", 5], "regex_pattern": "x", "group_index": 101}},
        "6": {"class_type": "StringReplace", "inputs": {"string": ["99", 0], "find": ["2"], "replace": "r"}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
        "8": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }
    result = validate(wf, registry)
    assert not result.valid
    kinds = set(types(result))
    assert {"missing_node_type", "return_type_mismatch", "invalid_input_type", "value_not_in_list",
            "value_smaller_than_min", "value_bigger_than_max", "output_index_out_of_range", "dangling_link",
            "bad_linked_input"} <= kinds
    missing = one(result, "missing_node_type")
    assert missing.node_id == "1" and "PrimitiveString" in missing.extra_info["suggestions"]
    mismatch = one(result, "return_type_mismatch")
    assert (mismatch.node_id, mismatch.input_name) == ("2", "string_b")
    assert "received_type(INT) mismatch input_type(STRING)" in mismatch.details
    assert one(result, "value_not_in_list").extra_info["received_value"] == "Every"
    assert one(result, "dangling_link").extra_info["linked_node"] == ["99", 0]
    assert one(result, "output_index_out_of_range").extra_info["output_count"] == 1
    for err in result.errors:
        comfy = err.to_comfy()
        assert set(comfy) == {"type", "message", "details", "extra_info"}
    node_errors = result.node_errors()
    assert node_errors["3"]["class_type"] == "PrimitiveInt"
    assert node_errors["3"]["errors"][0]["type"] == "invalid_input_type"


def test_required_input_missing_and_defaults(registry):
    wf = {"1": {"class_type": "StringReplace", "inputs": {"find": "a", "replace": "b"}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
          "3": {"class_type": "RegexMatch", "inputs": {"string": "abc", "regex_pattern": "b"}},
          "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}}}
    result = validate(wf, registry)
    err = one(result, "required_input_missing")
    assert (err.node_id, err.input_name) == ("1", "string")
    assert "3" not in {e.node_id for e in result.errors}  # widgets with defaults are filled in
    assert {w.input_name for w in result.warnings if w.type == "input_default_used" and w.node_id == "3"} == {
        "case_insensitive", "multiline", "dotall"}
    assert result.good_outputs == ["4"]


def test_no_outputs(registry):
    result = validate({"1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}}}, registry)
    assert types(result) == ["prompt_no_outputs"]
    assert types(validate({}, registry)) == ["prompt_no_outputs"]


def test_custom_validation_failed_from_validate_inputs(registry):
    wf = {"1": {"class_type": "RegexMatch", "inputs": {"string": "x", "regex_pattern": "(", "case_insensitive": True,
                                                       "multiline": False, "dotall": False}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    err = one(validate(wf, registry), "custom_validation_failed")
    assert err.node_id == "1" and "invalid regular expression" in err.message


def test_dependency_cycle_names_its_nodes(registry):
    wf = {"a": {"class_type": "StringReplace", "inputs": {"string": ["c", 0], "find": "x", "replace": "y"}},
          "b": {"class_type": "StringReplace", "inputs": {"string": ["a", 0], "find": "x", "replace": "y"}},
          "c": {"class_type": "StringReplace", "inputs": {"string": ["b", 0], "find": "x", "replace": "y"}},
          "out": {"class_type": "PreviewAny", "inputs": {"source": ["c", 0]}}}
    err = one(validate(wf, registry), "dependency_cycle")
    assert sorted(err.extra_info["cycle"]) == ["a", "b", "c"]
    assert "->" in err.message


def test_self_loop_is_a_cycle(registry):
    wf = {"a": {"class_type": "StringReplace", "inputs": {"string": ["a", 0], "find": "x", "replace": "y"}},
          "out": {"class_type": "PreviewAny", "inputs": {"source": ["a", 0]}}}
    assert one(validate(wf, registry), "dependency_cycle").extra_info["cycle"] == ["a"]


def test_literal_where_only_a_link_can_go(catalog_registry):
    wf = {"1": {"class_type": "VAEDecode", "inputs": {"samples": "latent.png", "vae": ["2", 2]}},
          "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    result = validate(wf, catalog_registry)
    assert one(result, "literal_for_link_input").input_name == "samples"
    empty = one(result, "value_not_in_list")
    assert "no matching files are installed" in empty.message


def test_unknown_inputs_are_warnings_with_suggestions(registry):
    wf = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "a", "valeu": "b"}},
          "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    result = validate(wf, registry)
    assert result.valid
    warn = next(w for w in result.warnings if w.type == "unknown_input")
    assert warn.extra_info["suggestions"] == ["value"]


def test_malformed_nodes_are_structured_errors(registry):
    for wf in ([], "text", 3, None, {"1": "x"}, {"1": {"inputs": {}}}, {"1": {"class_type": 5}},
               {"1": {"class_type": "PreviewAny", "inputs": []}}):
        result = validate(wf, registry)
        assert not result.valid and result.errors
        assert all(e.type in ("invalid_prompt", "prompt_no_outputs") for e in result.errors)


@pytest.mark.parametrize("n", [2000, 20000])
def test_deep_chains_have_no_recursion_limit(registry, n):
    result = validate(chain(n), registry)
    assert result.valid
    assert result.plan.order[0] == "0" and result.plan.order[-1] == "out" and len(result.plan.order) == n + 1


def test_errors_in_unneeded_nodes_are_warnings(registry):
    wf = chain(3)
    wf["loose"] = {"class_type": "PrimitiveInt", "inputs": {"value": "bad"}}
    result = validate(wf, registry)
    assert result.valid
    assert any(w.type == "invalid_input_type" and w.node_id == "loose" for w in result.warnings)


def test_requested_outputs_subset(registry):
    wf = chain(3)
    wf["other"] = {"class_type": "PreviewAny", "inputs": {"source": ["0", 0]}}
    result = validate(wf, registry, outputs=["other"])
    assert result.valid and result.plan.order == ["0", "other"]
    assert types(validate(wf, registry, outputs=["nope"])) == ["invalid_prompt"]
