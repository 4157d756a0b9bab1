"""API → UI conversion (compiler.ui_export): the result converts back to the same prompt through the UI → API
path, opens with a readable layout (columns left to right, no overlapping boxes, few crossing links), and works
for catalog-only and unknown classes; `nodeweaver convert --to ui` writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, shared_catalog

from compiler import WorkflowFormatError, load_workflow
from compiler.ui_export import to_ui_workflow
from compiler.ui_format import ui_to_api
from nodes.registry import NodeRegistry

FILES = sorted((REPO / "evals" / "suites" / "workflows").glob("*.json")) + sorted((REPO / "examples").glob("*.json"))
REACH_CASES = 30


def round_trip(api: dict, registry) -> tuple[dict, dict]:
    """The UI workflow (through JSON, as a file carries it) and the prompt it converts back to."""
    ui = json.loads(json.dumps(to_ui_workflow(api, registry)))
    back, warnings = ui_to_api(ui, registry)
    assert not warnings, warnings
    return ui, back


def assert_same_prompt(api: dict, back: dict) -> None:
    assert set(back) == set(api)
    for node_id, node in api.items():
        assert back[node_id]["class_type"] == node["class_type"], node_id
        assert back[node_id]["inputs"] == node["inputs"], node_id
        title = (node.get("_meta") or {}).get("title")
        if title:
            assert back[node_id]["_meta"]["title"] == title, node_id


def with_api_ids(prompt: dict, ui: dict) -> dict:
    """`prompt` with renumbered nodes given back the API ids their `properties.api_id` keeps."""
    names = {str(n["id"]): n["properties"]["api_id"] for n in ui["nodes"] if "api_id" in n["properties"]}

    def rename(value):
        return [names.get(value[0], value[0]), value[1]] if isinstance(value, list) and len(value) == 2 \
            and value[0] in prompt else value

    return {names.get(k, k): {**node, "inputs": {name: rename(v) for name, v in node["inputs"].items()}}
            for k, node in prompt.items()}


def boxes(ui: dict) -> dict[int, tuple[float, float, float, float]]:
    return {n["id"]: (n["pos"][0], n["pos"][1], n["size"][0], n["size"][1]) for n in ui["nodes"]}


def assert_readable(ui: dict) -> None:
    """No two boxes overlap; every link runs left to right; link ids match the slots they join."""
    placed = list(boxes(ui).items())
    for i, (a, (ax, ay, aw, ah)) in enumerate(placed):
        for b, (bx, by, bw, bh) in placed[i + 1:]:
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
            assert apart, f"nodes {a} and {b} overlap"
    at = boxes(ui)
    nodes = {n["id"]: n for n in ui["nodes"]}
    for link_id, source, slot, target, target_slot, _ in ui["links"]:
        assert at[source][0] + at[source][2] < at[target][0], f"link {link_id} runs right to left"
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
        assert link_id in nodes[source]["outputs"][slot]["links"]
    assert [link[0] for link in ui["links"]] == list(range(1, len(ui["links"]) + 1))
    assert ui["last_link_id"] == len(ui["links"]) and ui["last_node_id"] == max(nodes)


def crossings(ui: dict) -> int:
    """Pairs of links between the same two columns whose ends are in opposite vertical order."""
    at = boxes(ui)
    ends = [(at[s][0], at[t][0], at[s][1], at[t][1]) for _, s, _, t, _, _ in ui["links"]]
    return sum(1 for i, a in enumerate(ends) for b in ends[i + 1:]
               if a[:2] == b[:2] and (a[2] - b[2]) * (a[3] - b[3]) < 0)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_files_round_trip_and_lay_out(path, catalog_registry):
    api = json.loads(path.read_text(encoding="utf-8"))
    ui, back = round_trip(api, catalog_registry)
    assert_same_prompt(api, back)
    assert_readable(ui)
    assert ui["version"] == 0.4 and all(n["mode"] == 0 for n in ui["nodes"])


def test_planner_outputs_round_trip_and_lay_out(tmp_path):
    """~30 plans of the reach suite (its catalog and environment), each back to the identical prompt."""
    from agent.planner import plan
    from evals.environment import environment
    from evals.runner import with_catalog
    from evals.suite import load_suite
    from nodes.registry import default_registry

    shared_catalog()  # the suite names the shared catalog; without ../shared it cannot load
    suite = load_suite(REPO / "evals" / "suites" / "planner_reach.yaml")
    registry = with_catalog(default_registry(), shared_catalog())
    step = max(1, len(suite.cases) // REACH_CASES)
    checked = set()
    with environment(suite.environment, tmp_path):
        for case in suite.cases[::step][:REACH_CASES]:
            workflow = plan(case.prompt, registry=registry).workflow
            if not workflow:
                continue
            ui, back = round_trip(workflow, registry)
            assert_same_prompt(workflow, back)
            assert_readable(ui)
            checked.update(node["class_type"] for node in workflow.values())
    assert len(checked) >= 25, sorted(checked)


def test_widget_values_follow_the_frontend_order(catalog_registry):
    api = json.loads((REPO / "evals" / "suites" / "workflows" / "t2i_sd15.json").read_text())
    api["5"]["inputs"]["steps"] = ["9", 0]
    api["9"] = {"class_type": "PrimitiveInt", "inputs": {"value": 12}, "_meta": {"title": "Steps"}}
    api["2"]["_meta"] = {"title": "Positive prompt"}
    ui, back = round_trip(api, catalog_registry)
    assert_same_prompt(api, back)
    nodes = {n["id"]: n for n in ui["nodes"]}
    sampler = nodes[5]
    # seed, its control value, then steps (linked: the widget keeps a value) ... in INPUT_TYPES order
    assert sampler["widgets_values"] == [42, "fixed", 20, 7.0, "euler", "normal", 1.0]
    steps = next(s for s in sampler["inputs"] if s["name"] == "steps")
    assert steps["widget"] == {"name": "steps"} and steps["link"] is not None
    assert [s["name"] for s in sampler["inputs"]][:4] == ["model", "positive", "negative", "latent_image"]
    assert nodes[2]["title"] == "Positive prompt" and "title" not in nodes[1]
    assert nodes[5]["properties"] == {"Node name for S&R": "KSampler"}
    assert [o["name"] for o in nodes[1]["outputs"]] == ["MODEL", "CLIP", "VAE"]


def test_barycenter_ordering_untangles_crossed_links(catalog_registry):
    """Sources listed in the opposite order of their consumers: the layout puts them in line."""
    api = {str(i): {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}}
           for i in (1, 2, 3)}
    for target, source in (("4", "3"), ("5", "2"), ("6", "1")):
        api[target] = {"class_type": "LatentUpscaleBy", "inputs": {"samples": [source, 0],
                                                                   "upscale_method": "nearest-exact",
                                                                   "scale_by": 1.5}}
    api["7"] = {"class_type": "LatentBatch", "inputs": {"samples1": ["4", 0], "samples2": ["6", 0]}}
    ui, back = round_trip(api, catalog_registry)
    assert_same_prompt(api, back)
    assert_readable(ui)
    assert crossings(ui) == 0
    x = {n["id"]: n["pos"][0] for n in ui["nodes"]}
    assert x[1] == x[2] == x[3] < x[4] == x[5] == x[6] < x[7]


def test_long_links_and_pulled_sources_keep_columns(catalog_registry):
    """A loader used only late sits just before its consumer; a long link crosses no box."""
    api = json.loads((REPO / "evals" / "suites" / "workflows" / "t2v_wan.json").read_text())
    ui, _ = round_trip(api, catalog_registry)
    assert_readable(ui)
    columns = sorted({n["pos"][0] for n in ui["nodes"]})
    column = {n["type"]: columns.index(n["pos"][0]) for n in ui["nodes"]}
    assert column["VAELoader"] == column["VAEDecode"] - 1
    assert column["UNETLoader"] == 0 and column["SaveVideo"] == len(columns) - 1


def test_catalog_only_registry_unknown_classes_and_odd_ids():
    """Nodes known only from the catalog, a class nobody declares, literals on inputs without a widget,
    and ids that are no plain numbers (a flattened subgraph's "12:5") all survive the round trip."""
    registry = NodeRegistry()
    registry.import_catalog_file(shared_catalog())
    api = json.loads((REPO / "evals" / "suites" / "workflows" / "img2img_sd15.json").read_text())
    api["12:5"] = {"class_type": "MyCustomBlur", "inputs": {"image": ["2", 0], "radius": 3, "mode": "box"}}
    api["save"] = {"class_type": "SaveImage", "inputs": {"images": ["12:5", 1], "filename_prefix": "blur"},
                   "_meta": {"title": "Save blurred"}}
    api["8"]["inputs"]["extra_note"] = "kept"  # an input SaveImage does not declare
    api["6"]["inputs"]["model"] = ["1", 0]
    api["20"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["save", 0], "upscale_method": "area",
                                                          "scale_by": 2.0}}
    ui, back = round_trip(api, registry)
    assert_same_prompt(api, with_api_ids(back, ui))
    assert_readable(ui)
    nodes = {n["id"]: n for n in ui["nodes"]}
    renamed = {n["properties"].get("api_id"): n["id"] for n in ui["nodes"] if "api_id" in n["properties"]}
    assert set(renamed) == {"12:5", "save"} and min(renamed.values()) > 20
    blur = nodes[renamed["12:5"]]
    assert blur["widgets_values_named"] == {"radius": 3, "mode": "box"} and len(blur["outputs"]) == 2
    primitive = next(n for n in ui["nodes"] if n["type"] == "PrimitiveNode")
    assert primitive["widgets_values"] == ["kept"] and primitive["title"] == "extra_note"


def test_optional_widgets_left_out_stay_left_out(catalog_registry):
    """widgets_values stop after the last widget the prompt sets, so no default is added on the way back."""
    api = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 640}}}
    ui, back = round_trip(api, catalog_registry)
    assert ui["nodes"][0]["widgets_values"] == [640]
    assert back["1"]["inputs"] == {"width": 640}


@pytest.mark.parametrize("bad", [[], "text", {"1": {"inputs": {}}}, {"1": {"class_type": "X", "inputs": []}},
                                 {"1": 5}])
def test_not_an_api_prompt_is_a_format_error(bad, catalog_registry):
    with pytest.raises(WorkflowFormatError) as caught:
        to_ui_workflow(bad, catalog_registry)
    assert caught.value.errors[0].type == "invalid_workflow_format"


def test_cli_convert_to_ui(tmp_path, capsys):
    from nodeweaver.cli import main

    source = REPO / "evals" / "suites" / "workflows" / "img2img_sd15.json"
    out = tmp_path / "img2img.ui.json"
    assert main(["convert", str(source), "--to", "ui", "--catalog", str(shared_catalog()), "-o", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert {n["type"] for n in written["nodes"]} >= {"LoadImage", "VAEEncode", "KSampler"}
    registry = NodeRegistry()
    registry.load_builtin_packs()
    registry.import_catalog_file(shared_catalog())
    loaded = load_workflow(out, registry)
    assert loaded.format == "ui"
    assert_same_prompt(json.loads(source.read_text()), loaded.prompt)

    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"inputs": {}}}', encoding="utf-8")
    assert main(["convert", str(bad), "--to", "ui"]) != 0
    err = capsys.readouterr().err
    assert "cannot convert" in err and "Traceback" not in err


def test_cli_convert_to_ui_on_standard_output(capsys):
    from nodeweaver.cli import main

    text = REPO / "examples" / "welcome_text.json"
    assert main(["convert", str(text), "--to", "ui"]) == 0
    ui = json.loads(capsys.readouterr().out)
    assert ui["nodes"] and ui["version"] == 0.4
    assert_readable(ui)


def test_repository_examples_exist():
    assert len(FILES) >= 8 and all(Path(p).is_file() for p in FILES)
