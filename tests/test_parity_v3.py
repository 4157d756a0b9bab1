"""ComfyUI V3 nodes (comfy_api.latest io.ComfyNode, ComfyExtension, comfy_entrypoint) seen through the V1 view
the registry and engine use: tests/data/v3_pack is loaded through its entrypoint, registered, validated and run.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import DATA

from compiler import validate
from engine import Executor
from nodes.comfy_compat import install_shims
from nodes.comfy_compat.extensions import ExtensionError, entrypoint_mappings


def _import(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def v3(registry):
    """The registry with the V3 pack's nodes, registered from what its comfy_entrypoint returns."""
    install_shims()
    module = _import("v3_pack", DATA / "v3_pack")
    mappings, display = entrypoint_mappings(module)
    for name, cls in mappings.items():
        registry.register(name, cls, display.get(name), pack="v3_pack")
    module.CALLS.clear()
    return registry, module


def run(registry, workflow):
    result = validate(workflow, registry)
    assert result.valid, result.errors
    return Executor(registry).execute(result.plan, prompt_id="p")


def pick_workflow(choose_true: bool, value: int = 3) -> dict:
    return {"1": {"class_type": "V3Number", "inputs": {"value": value, "mode": "plain"}},
            "2": {"class_type": "V3Number", "inputs": {"value": 50, "mode": "double"}},
            "3": {"class_type": "V3Pick", "inputs": {"choose_true": choose_true, "on_true": ["1", 0],
                                                     "on_false": ["2", 0]}},
            "4": {"class_type": "V3Show", "inputs": {"value": ["3", 0]}}}


def test_entrypoint_gives_node_ids_display_names_and_a_comfyui_shaped_v1_view(v3):
    registry, _ = v3
    info = registry.node_info("V3Pick")
    assert registry.display_name("V3Pick") == "V3 Pick" and info["category"] == "testing/v3"
    assert info["output"] == ["INT"] and info["output_name"] == ["picked"]
    assert info["python_module"] == "custom_nodes.v3_pack"
    assert info["input"]["required"]["on_true"] == ["INT", {"tooltip": "used when true", "lazy": True,
                                                            "min": 0, "max": 100}]
    assert info["input"]["hidden"] == {"unique_id": ["UNIQUE_ID"]}
    # an output node gets the prompt and extra_pnginfo, as in ComfyUI's Schema.finalize
    assert registry.node_info("V3Show")["input"]["hidden"] == {"prompt": ["PROMPT"],
                                                               "extra_pnginfo": ["EXTRA_PNGINFO"]}
    combo = registry.node_info("V3Number")["input"]["required"]["mode"]
    assert combo[0] == "COMBO" and combo[1]["options"] == ["plain", "double"]
    assert registry.node_info("V3Show")["output_node"] is True
    spec = registry.spec("V3Pick")
    assert {i.name for i in spec.inputs if i.lazy} == {"on_true", "on_false"}


def test_lazy_input_only_the_chosen_branch_runs_and_hidden_values_arrive(v3):
    registry, module = v3
    done = run(registry, pick_workflow(True))
    assert done.status == "success", done.error
    assert module.CALLS == ["V3Number:3", "V3Pick:3"]  # node 2 (the other branch) never ran
    assert done.outputs["4"] == {"text": ["3 (prompt has 4 nodes)"]}
    module.CALLS.clear()
    done = run(registry, pick_workflow(False))
    assert done.outputs["4"] == {"text": ["100 (prompt has 4 nodes)"]}
    assert "V3Number:3" not in module.CALLS and "V3Number:50" in module.CALLS


def test_validate_inputs_refuses_with_the_nodes_message(v3):
    registry, _ = v3
    result = validate(pick_workflow(True, value=-5), registry)
    assert not result.valid
    [error] = [e for e in result.errors if e.type == "custom_validation_failed"]
    assert error.node_id == "1" and "value must not be negative, got -5" in error.message


def test_fingerprint_inputs_decides_what_is_cached(v3):
    registry, module = v3
    executor = Executor(registry)
    for value in (3, 3, 4):
        result = validate(pick_workflow(True, value=value), registry)
        executor.execute(result.plan, prompt_id=f"p{value}")
    # the second run with value 3 came from the cache; value 4 changed the fingerprint and ran again
    assert module.CALLS.count("V3Number:3") == 1 and module.CALLS.count("V3Number:4") == 1


def test_entrypoint_of_the_wrong_shape_is_a_clear_error():
    install_shims()
    from comfy_api.latest import ComfyExtension

    class NotNodes(ComfyExtension):
        async def get_node_list(self):
            return [int]

    module = type(sys)("broken_v3")
    module.comfy_entrypoint = NotNodes
    with pytest.raises(ExtensionError, match="not an io.ComfyNode class"):
        entrypoint_mappings(module)
    module.comfy_entrypoint = lambda: object()
    with pytest.raises(ExtensionError, match="not a ComfyExtension"):
        entrypoint_mappings(module)
    assert entrypoint_mappings(type(sys)("v1_only")) is None


def test_a_v3_node_without_execute_is_refused_by_name():
    install_shims()
    from comfy_api.latest import io

    class NoExecute(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="NoExecute", inputs=[], outputs=[])

    with pytest.raises(TypeError, match="NoExecute must define both define_schema and execute"):
        NoExecute.GET_SCHEMA()


def test_a_v3_pack_in_a_custom_nodes_folder_loads_through_its_entrypoint(registry, tmp_path):
    """As ComfyUI loads it: a pack folder with comfy_entrypoint and no NODE_CLASS_MAPPINGS."""
    import shutil

    shutil.copytree(DATA / "v3_pack", tmp_path / "v3_pack_folder")
    registry.load_custom_nodes([tmp_path])
    assert not registry.load_errors, registry.load_errors
    assert {"V3Pick", "V3Number", "V3Show"} <= set(registry.names())
    result = run(registry, pick_workflow(True, value=4))
    assert result.status == "success"
