"""The ComfyUI modules custom packs import: comfy, comfy_execution, comfy_api, server, folder_paths, nodes.

A small pack (tests/data/compat_pack) imports them the way third-party packs do; these tests load it, run its
nodes through the engine, and check the helpers' own behaviour (graph ids, upscaling, checkpoint loading,
interruption) and that a real ComfyUI module is never shadowed.
"""

from __future__ import annotations

import contextvars
import json
import sys
from operator import ne
from pathlib import Path

import pytest
import torch
from conftest import DATA, run_cli

from compiler import validate
from engine import EventBus, Executor
from nodes.comfy_compat import SHIMS, install_shims
from runtime import progress
from runtime.comfy_graph import ExecutionBlocker, GraphBuilder, add_graph_prefix, is_link

COMFYUI_PACK = Path("/tmp/comfyui/tests/execution/testing_nodes/testing-pack")


@pytest.fixture
def reg(registry):
    registry.load_custom_nodes([DATA / "compat_pack"])
    assert registry.load_errors == []
    return registry


def run(reg, wf, bus=None):
    result = validate(wf, reg)
    assert result.valid, result.errors
    return Executor(reg, bus=bus).execute(result.plan, prompt_id="p")


def describe(node_id, source):
    return {node_id: {"class_type": "CompatDescribe", "inputs": {"value": source}}}


def test_pack_importing_every_module_loads(reg):
    expected = {"CompatProgress", "CompatAsyncProgress", "CompatSolid", "CompatUpscale", "CompatDescribe",
                "CompatLoadTensorSum", "CompatEnvironment", "CompatBlockUnless", "CompatExpandRepeat"}
    assert expected <= set(reg.names())
    assert reg.display_name("CompatDescribe") == "Describe (compat)"
    assert reg.node_info("CompatSolid")["input"]["required"]["width"][1]["max"] == 16384  # nodes.MAX_RESOLUTION
    assert reg.node_info("CompatAsyncProgress")["output"] == ["*"]  # IO.ANY serialises as ComfyUI's "*"


def test_progress_from_progressbar_and_comfy_api_reaches_events(reg):
    events = []
    bus = EventBus()
    bus.subscribe(events.append)
    wf = {"p": {"class_type": "CompatProgress", "inputs": {"steps": 3}},
          "a": {"class_type": "CompatAsyncProgress", "inputs": {"value": ["p", 0]}},
          **describe("o", ["a", 0])}
    result = run(reg, wf, bus)
    assert result.status == "success" and result.outputs["o"] == {"text": ["3"]}
    seen = [(e.data["node"], e.data["value"], e.data["max"]) for e in events if e.type == "progress"]
    assert seen == [("p", 1, 3), ("p", 2, 3), ("p", 3, 3), ("p", 3, 4), ("a", 0.5, 1.0)]


def test_common_upscale_resizes_and_center_crops_inside_a_workflow(reg):
    wf = {"s": {"class_type": "CompatSolid", "inputs": {"width": 8, "height": 4}},
          "u": {"class_type": "CompatUpscale", "inputs": {"image": ["s", 0], "width": 6, "height": 6,
                                                          "crop": "center"}},
          **describe("o", ["u", 0])}
    result = run(reg, wf)
    assert result.status == "success" and result.outputs["o"] == {"text": ["1x6x6x3"]}
    assert torch.allclose(result.output_value("u"), torch.full((1, 6, 6, 3), 0.5))


def test_common_upscale_crop_keeps_the_middle_and_rejects_unknown_methods():
    from nodes.comfy_compat.comfy.utils import common_upscale

    columns = torch.arange(8.0).repeat(1, 1, 2, 1)  # [1, 1, 2, 8]: each column holds its index
    cropped = common_upscale(columns, 2, 2, "nearest-exact", "center")
    assert cropped[0, 0, 0].tolist() == [3.0, 4.0]  # the 2x2 middle of an 8-wide, 2-high picture
    with pytest.raises(ValueError, match="unknown upscale method 'sinc'"):
        common_upscale(columns, 2, 2, "sinc", "disabled")
    with pytest.raises(ValueError, match="must be positive"):
        common_upscale(columns, 0, 2, "bilinear", "disabled")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_load_torch_file_reads_safetensors_and_weights_only_pickles(reg, tmp_path, suffix):
    from safetensors.torch import save_file

    path = tmp_path / f"weights{suffix}"
    tensors = {"a": torch.ones(2, 2), "b": torch.full((3,), 2.0)}
    if suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save({"state_dict": tensors}, path)
    wf = {"l": {"class_type": "CompatLoadTensorSum", "inputs": {"path": str(path)}}, **describe("o", ["l", 0])}
    result = run(reg, wf)
    assert result.status == "success" and result.outputs["o"] == {"text": ["10.0"]}


def test_environment_facts_from_model_management_nodes_and_io(reg):
    wf = {"e": {"class_type": "CompatEnvironment", "inputs": {}}, **describe("o", ["e", 0])}
    result = run(reg, wf)
    from runtime.models import best_device

    text = result.outputs["o"]["text"][0]
    assert text == (f"device={best_device()} interrupted=False builtin_int=True number_takes_int=True "
                    "link=True input_dir=True")


def test_expansion_built_with_graph_builder_runs_builtin_nodes(reg):
    wf = {"x": {"class_type": "CompatExpandRepeat", "inputs": {"text": "hi", "suffix": "!", "times": 3}},
          **describe("o", ["x", 0])}
    result = run(reg, wf)
    assert result.status == "success" and result.outputs["o"] == {"text": ["hi!!!"]}


def test_silent_execution_blocker_skips_the_consumer(reg):
    wf = {"b": {"class_type": "CompatBlockUnless", "inputs": {"value": "v", "allow": False, "message": ""}},
          **describe("o", ["b", 0])}
    result = run(reg, wf)
    assert result.status == "success" and "o" not in result.outputs


def test_interruption_is_seen_through_model_management():
    from nodes.comfy_compat.comfy import model_management as mm

    assert mm.InterruptProcessingException is progress.InterruptedExecution
    assert mm.processing_interrupted() is False  # outside a node: nothing to interrupt
    mm.throw_exception_if_processing_interrupted()
    token = progress.current_node.set(progress.NodeContext("p", "n", lambda *a: None, lambda: True))
    try:
        assert mm.processing_interrupted() is True
        with pytest.raises(mm.InterruptProcessingException):
            mm.throw_exception_if_processing_interrupted()
    finally:
        progress.current_node.reset(token)


def test_comfy_api_outside_a_node_says_why():
    from nodes.comfy_compat.comfy_api.v0_0_2 import ComfyAPISync

    with pytest.raises(ValueError, match="outside a running node"):
        ComfyAPISync().execution.set_progress(value=1, max_value=2)


def test_comfy_api_latest_offers_the_execution_api_and_says_what_it_lacks(registry, tmp_path):
    install_shims()
    from comfy_api.latest import ComfyAPI, ComfyAPISync

    assert hasattr(ComfyAPI().execution, "set_progress") and hasattr(ComfyAPISync().execution, "set_progress")
    (tmp_path / "v3_pack.py").write_text("from comfy_api.latest import InputImpl\nNODE_CLASS_MAPPINGS = {}\n")
    registry.load_custom_nodes([tmp_path])
    [error] = registry.load_errors
    assert error.pack == "v3_pack" and "cannot import name 'InputImpl'" in error.error
    assert "comfy_api.latest" in error.error


def test_graph_builder_ids_are_unique_per_expanding_node_and_call():
    contextvars.copy_context().run(_check_prefixes)  # the prefix set here must not leak into other tests


def _check_prefixes() -> None:
    GraphBuilder.set_default_prefix("7", 0)
    first, second = GraphBuilder(), GraphBuilder()
    a = first.node("IntAdd", a=1, b=2)
    b = first.node("IntAdd", a=a.out(0), b=3)
    assert first.node("Other", id="1") is a  # the same id gives back the same node
    other = second.node("IntAdd", a=1, b=2)
    assert a.id == "7.0.0.1" and b.id == "7.0.0.2" and other.id == "7.0.1.1"
    GraphBuilder.set_default_prefix("8", 2)
    assert GraphBuilder().node("X").id == "8.2.0.1"
    assert first.finalize() == {"7.0.0.1": {"class_type": "IntAdd", "inputs": {"a": 1, "b": 2}},
                                "7.0.0.2": {"class_type": "IntAdd", "inputs": {"a": ["7.0.0.1", 0], "b": 3}}}


def test_graph_builder_edits_and_explicit_prefix():
    graph = GraphBuilder(prefix="p.")
    source = graph.node("Src", id="s")
    sink = graph.node("Sink", id="k", value=source.out(0), keep=1)
    assert graph.lookup_node("s") is source and graph.lookup_node("missing") is None
    graph.replace_node_output("s", 0, 42)
    assert sink.get_input("value") == 42
    sink.set_input("value", source.out(0))
    graph.replace_node_output("s", 0, None)
    sink.set_input("keep", None)
    sink.set_override_display_id("9")
    graph.remove_node("s")
    assert graph.finalize() == {"p.k": {"class_type": "Sink", "inputs": {}, "override_display_id": "9"}}


def test_is_link_add_graph_prefix_and_blocker():
    assert is_link(["3", 0]) and is_link(["3", 1.0])
    assert not any(is_link(v) for v in (("3", 0), [3, 0], ["3", "0"], ["3", True], ["3", 0, 1], "3"))
    graph, outputs = add_graph_prefix({"1": {"class_type": "A", "inputs": {"x": ["2", 0], "y": 5}}},
                                      (["1", 0], 7), "e.")
    assert graph == {"e.1": {"class_type": "A", "inputs": {"x": ["e.2", 0], "y": 5}}}
    assert outputs == (["e.1", 0], 7)
    assert ExecutionBlocker("no").message == "no" and ExecutionBlocker(None).message is None


def test_io_types_match_loosely_as_comfyui():
    from nodes.comfy_compat.comfy.comfy_types import IO, ComfyNodeABC, node_typing

    assert node_typing.IO is IO and node_typing.ComfyNodeABC is ComfyNodeABC
    # ComfyUI's validator compares types with `!=`, so that operator (not `==`) carries the loose matching.
    assert not ne(IO.ANY, "LATENT") and not ne(IO.NUMBER, "INT") and not ne(IO.INT, "FLOAT,INT")
    assert ne(IO.INT, "STRING") and ne(IO.IMAGE, 3)
    assert {IO.IMAGE: 1}["IMAGE"] == 1 and json.dumps([IO.ANY]) == '["*"]'


def test_shims_never_shadow_a_real_module(tmp_path, monkeypatch):
    real = tmp_path / "comfy"
    real.mkdir()
    (real / "__init__.py").write_text("REAL = True\n")
    install_shims()  # every shim name is in sys.modules now, so monkeypatch puts each back afterwards
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [n for modules in SHIMS.values() for n, _ in modules]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    installed = install_shims()
    assert "comfy" not in installed and "comfy.utils" not in installed
    assert {"comfy_execution.graph_utils", "comfy_api.v0_0_2", "server", "folder_paths"} <= set(installed)
    import comfy

    assert comfy.REAL is True
    assert install_shims() == []  # idempotent


def test_loading_one_pack_directly_installs_the_shims(registry, monkeypatch):
    install_shims()  # so monkeypatch can put every name back afterwards
    for name in [n for modules in SHIMS.values() for n, _ in modules] + ["compat_pack", "compat_pack.compat_nodes"]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    added = registry.load_pack_path(DATA / "compat_pack")
    assert registry.load_errors == [] and "CompatEnvironment" in added


def test_nodes_serves_as_comfyuis_nodes_module(registry):
    import nodes

    assert nodes.MAX_RESOLUTION == 16384
    assert nodes.NODE_CLASS_MAPPINGS["PrimitiveInt"] is registry.get_class("PrimitiveInt")
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(registry.names())
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["PrimitiveInt"] == registry.display_name("PrimitiveInt")
    with pytest.raises(TypeError):
        nodes.NODE_CLASS_MAPPINGS["X"] = object  # a read-only view of the built-ins


@pytest.mark.slow
def test_importing_nodes_stays_cheap_and_cycle_free():
    import subprocess

    code = ("import sys, nodes; assert 'nodes.core' not in sys.modules, 'eager'; "
            "from nodes import NODE_CLASS_MAPPINGS as m; assert 'nodes.core' not in sys.modules, 'eager'; "
            "assert 'PrimitiveString' in m; print(len(m))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 10


@pytest.mark.slow
def test_cli_lists_our_compat_pack_without_load_errors():
    done = run_cli("nodes", "--custom-nodes", str(DATA / "compat_pack"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["load_errors"] == []
    listed = run_cli("nodes", "CompatExpandRepeat", "--custom-nodes", str(DATA / "compat_pack")).stdout
    assert "CompatExpandRepeat" in listed


@pytest.mark.slow
@pytest.mark.skipif(not COMFYUI_PACK.is_dir(), reason="ComfyUI's testing pack is not on this machine")
def test_comfyui_testing_pack_loads_without_errors():
    done = run_cli("nodes", "--custom-nodes", str(COMFYUI_PACK), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["load_errors"] == []
    for name in ("TestLazyMixImages", "TestExecutionBlocker", "TestAsyncProgressUpdate"):
        assert name in run_cli("nodes", name, "--custom-nodes", str(COMFYUI_PACK)).stdout
