"""ComfyUI parity of validation (VALIDATE_INPUTS and partly valid prompts) and of two image behaviours."""

from __future__ import annotations

import asyncio

import pytest

from compiler import validate
from engine import Executor


def _types(result) -> list[str]:
    return [e.type for e in result.errors]


def _through(class_type: str, value) -> dict:
    return {"v": {"class_type": class_type, "inputs": {"value": value}},
            "out": {"class_type": "PreviewAny", "inputs": {"source": ["v", 0]}}}


# ---- literals on link-only inputs ------------------------------------------------------------------------
def test_literal_on_socket_input_goes_to_validate_inputs(reg):
    result = validate(_through("ParitySocketLiteral", 2.5), reg)
    assert result.valid, result.errors
    assert result.plan.prompt["v"]["inputs"]["value"] == 2.5
    outcome = Executor(reg).execute(result.plan)
    assert outcome.status == "success", outcome.error
    assert outcome.output_value("v") == 5.0


@pytest.mark.parametrize("literal, shown", [(5, "int"), ("foo", "str")])
def test_literal_refused_by_validate_inputs_keeps_comfyui_type(reg, literal, shown):
    result = validate(_through("ParitySocketLiteral", literal), reg)
    assert not result.valid and _types(result) == ["custom_validation_failed"]
    assert f"Invalid type of value: {shown}" in result.errors[0].message
    assert result.node_errors()["v"]["errors"][0]["type"] == "custom_validation_failed"


def test_literal_on_socket_input_without_validate_inputs_is_still_refused(reg):
    wf = {"out": {"class_type": "PreviewImage", "inputs": {"images": 5}}}
    assert _types(validate(wf, reg)) == ["literal_for_link_input"]


# ---- input_types ------------------------------------------------------------------------------------------
def test_input_types_lets_validate_inputs_judge_link_types(reg):
    def wf(source: str) -> dict:
        return {"s": {"class_type": source, "inputs": {"value": 3}},
                "v": {"class_type": "ParityInputTypes", "inputs": {"value": ["s", 0], "scale": 2.0}},
                "out": {"class_type": "PreviewAny", "inputs": {"source": ["v", 0]}}}

    refused = validate(wf("ParityIntSource"), reg)
    # not return_type_mismatch: ComfyUI skips its own type check when VALIDATE_INPUTS takes input_types
    assert _types(refused) == ["custom_validation_failed"]
    assert "Invalid type of value: INT" in refused.errors[0].message
    accepted = validate(wf("ParityFloatSource"), reg)
    assert accepted.valid, accepted.errors  # the literal on `scale` is left to the node too, as in ComfyUI
    outcome = Executor(reg).execute(accepted.plan)
    assert outcome.status == "success", outcome.error
    assert outcome.output_value("v") == 6.0


def test_without_input_types_a_mismatched_link_is_refused(reg):
    wf = {"s": {"class_type": "ParityIntSource", "inputs": {"value": 3}},
          "v": {"class_type": "ParitySocketLiteral", "inputs": {"value": ["s", 0]}},
          "out": {"class_type": "PreviewAny", "inputs": {"source": ["v", 0]}}}
    assert _types(validate(wf, reg)) == ["return_type_mismatch"]


# ---- async VALIDATE_INPUTS --------------------------------------------------------------------------------
def _async_wf(value: float) -> dict:
    return {"v": {"class_type": "ParityAsyncValidate", "inputs": {"value": value, "limit": 10.0}},
            "out": {"class_type": "PreviewAny", "inputs": {"source": ["v", 0]}}}


def test_async_validate_inputs_is_awaited(reg):
    assert validate(_async_wf(5.0), reg).valid
    refused = validate(_async_wf(20.0), reg)
    assert _types(refused) == ["custom_validation_failed"]
    assert "Value 20.0 exceeds limit 10.0" in refused.errors[0].message


def test_async_validate_inputs_inside_a_running_event_loop(reg):
    async def from_async_code():
        return validate(_async_wf(5.0), reg), validate(_async_wf(20.0), reg)

    good, bad = asyncio.run(from_async_code())
    assert good.valid, good.errors
    assert _types(bad) == ["custom_validation_failed"]


# ---- prompts with good and bad outputs --------------------------------------------------------------------
def _two_outputs() -> dict:
    return {"a": {"class_type": "ParityFloatSource", "inputs": {"value": 1.5}},
            "bad": {"class_type": "ParitySocketLiteral", "inputs": {"value": ["gone", 0]}},
            "good": {"class_type": "ParitySocketLiteral", "inputs": {"value": ["a", 0]}},
            "out_bad": {"class_type": "PreviewAny", "inputs": {"source": ["bad", 0]}},
            "out_good": {"class_type": "PreviewAny", "inputs": {"source": ["good", 0]}}}


def test_good_outputs_get_a_plan_while_bad_ones_are_reported(reg):
    result = validate(_two_outputs(), reg)
    assert not result.valid and _types(result) == ["dangling_link"]
    assert result.good_outputs == ["out_good"]
    assert set(result.node_errors()) == {"bad"}
    assert result.node_errors()["bad"]["dependent_outputs"] == ["out_bad"]
    assert result.plan is not None and result.plan.outputs == ["out_good"]
    assert result.plan.order == ["a", "good", "out_good"]
    outcome = Executor(reg).execute(result.plan)
    assert outcome.status == "success", outcome.error
    assert set(outcome.outputs) == {"out_good"}
    assert outcome.output_value("good") == 3.0


def test_no_partial_plan_when_every_output_fails_or_a_node_type_is_unknown(reg):
    wf = _two_outputs()
    wf["good"]["inputs"]["value"] = ["gone", 0]
    every = validate(wf, reg)
    assert every.good_outputs == [] and every.plan is None
    unknown = _two_outputs()
    unknown["stray"] = {"class_type": "NoSuchNodeAnywhere", "inputs": {}}
    refused = validate(unknown, reg)
    assert "missing_node_type" in _types(refused) and refused.plan is None


# ---- images -----------------------------------------------------------------------------------------------
def _saved_pixels(outcome, node_id: str) -> list:
    import numpy as np
    from PIL import Image

    from runtime import folders

    pixels = []
    for entry in outcome.outputs[node_id]["images"]:
        root = folders.output_dir() if entry["type"] == "output" else folders.temp_dir()
        with Image.open(root / entry["subfolder"] / entry["filename"]) as picture:
            pixels.append(np.asarray(picture))
    return pixels


@pytest.mark.parametrize("saver", ["SaveImage", "PreviewImage"])
def test_8_bit_conversion_truncates_like_comfyui(reg, saver):
    pytest.importorskip("torch")
    # 0.5 * 255 = 127.5 and 0.999 * 255 = 254.7: ComfyUI truncates them to 127 and 254 (rounding gave 128, 255)
    wf = {"img": {"class_type": "ParityImageBatches", "inputs": {"sizes": "4", "start": -0.5, "step": 0.5}},
          "img2": {"class_type": "ParityImageBatches", "inputs": {"sizes": "1", "start": 0.999, "step": 0.0}},
          "save": {"class_type": saver, "inputs": {"images": ["img", 0]}},
          "save2": {"class_type": saver, "inputs": {"images": ["img2", 0]}}}
    outcome = Executor(reg).execute(validate(wf, reg).plan)
    assert outcome.status == "success", outcome.error
    greys = [int(p.min()) for p in _saved_pixels(outcome, "save")] + [int(_saved_pixels(outcome, "save2")[0].max())]
    assert greys == [0, 0, 127, 255, 254]  # -0.5 and 1.0 clip to 0 and 255


def test_rebatch_images_regroups_every_incoming_batch_in_order(reg):
    pytest.importorskip("torch")
    wf = {"img": {"class_type": "ParityImageBatches", "inputs": {"sizes": "2,3", "start": 0.0, "step": 0.25}},
          "rb": {"class_type": "RebatchImages", "inputs": {"images": ["img", 0], "batch_size": 2}},
          "save": {"class_type": "SaveImage", "inputs": {"images": ["rb", 0], "filename_prefix": "rebatch"}}}
    result = validate(wf, reg)
    assert result.valid, result.errors
    outcome = Executor(reg).execute(result.plan)
    assert outcome.status == "success", outcome.error
    batches = outcome.node_outputs["rb"][0]
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert [round(float(b[i].mean()), 2) for b in batches for i in range(b.shape[0])] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [int(p.max()) for p in _saved_pixels(outcome, "save")] == [0, 63, 127, 191, 255]


def test_rebatch_images_declares_comfyui_sockets(reg):
    spec = reg.spec("RebatchImages")
    assert [(i.name, i.type) for i in spec.inputs] == [("images", "IMAGE"), ("batch_size", "INT")]
    assert [o.type for o in spec.outputs] == ["IMAGE"]
    bad = {"img": {"class_type": "ParityImageBatches", "inputs": {}},
           "rb": {"class_type": "RebatchImages", "inputs": {"images": ["img", 0], "batch_size": 0}},
           "save": {"class_type": "SaveImage", "inputs": {"images": ["rb", 0]}}}
    assert _types(validate(bad, reg)) == ["value_smaller_than_min"]
