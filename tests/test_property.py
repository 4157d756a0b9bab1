"""Property-based tests: no input, however broken, escapes as anything but a structured result."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import WorkflowFormatError, format_text, parse_text, validate
from compiler.formats import load_workflow, to_api_workflow
from nodes.registry import NodeRegistry

REG = NodeRegistry()
REG.load_builtin_packs()
CLASSES = REG.names() + ["Unknown", "", "KSampler"]
INPUT_NAMES = ["value", "string", "string_a", "string_b", "delimiter", "find", "replace", "source", "regex_pattern",
               "mode", "group_index", "switch", "on_true", "on_false", "template", "values", "x"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)), max_leaves=12)
node_ids = st.sampled_from([str(i) for i in range(8)])
links = st.tuples(st.one_of(node_ids, st.integers(-2, 10), st.none()), st.one_of(st.integers(-2, 4), st.text(max_size=2))).map(list)
input_values = st.one_of(json_values, links)
nodes = st.fixed_dictionaries(
    {"class_type": st.one_of(st.sampled_from(CLASSES), json_scalars)},
    optional={"inputs": st.one_of(st.dictionaries(st.sampled_from(INPUT_NAMES), input_values, max_size=6),
                                  json_values),
              "_meta": json_values})
workflows = st.dictionaries(node_ids, st.one_of(nodes, json_values), max_size=8)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check_result(result) -> None:
    assert isinstance(result.valid, bool)
    assert result.valid == (not result.errors)
    for err in result.errors + result.warnings:
        assert isinstance(err.type, str) and err.type and isinstance(err.message, str)
        json.dumps(err.to_comfy(), default=str)
    if result.valid:
        assert result.plan is not None and set(result.plan.order) == set(result.plan.prompt)


@SETTINGS
@given(workflows)
def test_random_workflows_give_structured_results(wf):
    _check_result(validate(wf, REG))


@SETTINGS
@given(json_values)
def test_any_json_document(doc):
    try:
        loaded = to_api_workflow(doc, REG)
    except WorkflowFormatError as exc:
        assert exc.errors and all(e.type for e in exc.errors)
        return
    _check_result(validate(loaded.prompt, REG))


VALID = {
    "1": {"class_type": "PrimitiveString", "inputs": {"value": "abc"}},
    "2": {"class_type": "StringReplace", "inputs": {"string": ["1", 0], "find": "b", "replace": "x"}},
    "3": {"class_type": "RegexExtract", "inputs": {"string": ["2", 0], "regex_pattern": "a(.)", "mode": "First Group",
                                                   "case_insensitive": True, "multiline": False, "dotall": False,
                                                   "group_index": 1}},
    "4": {"class_type": "PreviewAny", "inputs": {"source": ["3", 0]}},
}


@SETTINGS
@given(st.sampled_from(list(VALID)), st.sampled_from(INPUT_NAMES + ["class_type"]), input_values)
def test_mutated_valid_workflow(node_id, key, value):
    wf = json.loads(json.dumps(VALID))
    if key == "class_type":
        wf[node_id]["class_type"] = value
    else:
        wf[node_id]["inputs"][key] = value
    _check_result(validate(wf, REG))


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_is_a_workflow_or_a_syntax_error(text):
    try:
        prompt = parse_text(text, REG)
    except WorkflowFormatError as exc:
        assert exc.errors[0].type == "text_form_syntax"
        return
    _check_result(validate(prompt, REG))


@SETTINGS
@given(st.dictionaries(st.from_regex(r"[0-9]{1,3}(:[0-9]{1,2})?|[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                       st.fixed_dictionaries({"class_type": st.sampled_from(CLASSES[:14]),
                                              "inputs": st.dictionaries(st.sampled_from(INPUT_NAMES), json_values,
                                                                        max_size=3)}), max_size=6))
def test_text_form_round_trip(prompt):
    try:
        text = format_text(prompt, REG)
    except WorkflowFormatError:
        return
    back = parse_text(text, REG)
    assert json.dumps(back, sort_keys=True) == json.dumps(prompt, sort_keys=True)
    assert format_text(back, REG) == text


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "wf.json"
    path.write_bytes(data)
    try:
        loaded = load_workflow(path, REG)
    except WorkflowFormatError as exc:
        assert exc.errors
        return
    _check_result(validate(loaded.prompt, REG))


@SETTINGS
@given(st.lists(st.one_of(json_values, st.fixed_dictionaries({
    "id": st.integers(0, 5), "type": st.sampled_from(CLASSES + ["Reroute", "PrimitiveNode", "Note"]),
    "mode": st.sampled_from([0, 2, 4]),
    "inputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(INPUT_NAMES), "type": st.text(max_size=3),
                                              "link": st.one_of(st.none(), st.integers(0, 6))}), max_size=3),
    "widgets_values": st.one_of(st.lists(json_scalars, max_size=4), json_values)})), max_size=6),
    st.lists(st.lists(st.integers(-20, 6), min_size=0, max_size=6), max_size=8))
def test_random_ui_workflows(nodes_list, links_list):
    ui = {"nodes": nodes_list, "links": links_list}
    try:
        loaded = to_api_workflow(ui, REG)
    except WorkflowFormatError:
        return
    _check_result(validate(loaded.prompt, REG))


_ANY = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 8), st.text(max_size=4)),
                    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(
                        st.sampled_from(["id", "name", "type", "link", "linkIds", "widget"]), c, max_size=3)),
                    max_leaves=8)
_UI_NODE = st.fixed_dictionaries({
    "id": st.integers(-20, 6),
    "type": st.sampled_from(["PrimitiveString", "StringConcatenate", "PreviewAny", "Reroute", "PrimitiveNode",
                             "sg1", "sg2", "Note", "Unknown"]),
    "mode": st.sampled_from([0, 2, 4, "x"]),
    "inputs": st.one_of(_ANY, st.lists(st.fixed_dictionaries({
        "name": st.sampled_from(["string_a", "source", "value", "text"]), "type": st.sampled_from(["STRING", "*"]),
        "link": st.one_of(st.none(), st.integers(0, 8)),
        "widget": st.one_of(st.none(), st.just({"name": "string_a"}))}), max_size=3)),
    "widgets_values": _ANY})
_LINKS = st.lists(st.one_of(st.lists(st.integers(-20, 8), min_size=6, max_size=6), _ANY, st.fixed_dictionaries({
    "id": st.integers(0, 8), "origin_id": st.integers(-20, 6), "origin_slot": st.integers(-1, 2),
    "target_id": st.integers(-20, 6), "target_slot": st.integers(-1, 2), "type": st.just("STRING")})), max_size=8)
_SUBGRAPH = st.fixed_dictionaries({
    "id": st.sampled_from(["sg1", "sg2"]), "nodes": st.lists(_UI_NODE, max_size=4), "links": _LINKS,
    "inputs": st.one_of(_ANY, st.lists(st.fixed_dictionaries({"name": st.sampled_from(["string_a", "text"]),
                                                              "linkIds": st.lists(st.integers(0, 8), max_size=2)}),
                                       max_size=2)),
    "outputs": st.one_of(_ANY, st.lists(st.fixed_dictionaries({"name": st.just("o"),
                                                               "linkIds": st.lists(st.integers(0, 8), max_size=2)}),
                                        max_size=2))})


@SETTINGS
@given(st.fixed_dictionaries({"nodes": st.lists(_UI_NODE, max_size=6), "links": _LINKS,
                              "definitions": st.one_of(_ANY, st.fixed_dictionaries(
                                  {"subgraphs": st.lists(_SUBGRAPH, max_size=2)}))}))
def test_random_ui_workflows_with_subgraphs(ui):
    try:
        loaded = to_api_workflow(ui, REG)
    except WorkflowFormatError:
        return
    _check_result(validate(loaded.prompt, REG))
