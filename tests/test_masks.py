"""Masks and compositing nodes (ComfyUI names and semantics) run through the engine on small tensors whose
results are worked out by hand, and their /object_info entries against ComfyUI's catalog."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from conftest import shared_catalog

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from compiler import validate  # noqa: E402
from engine import Executor  # noqa: E402

MASK_NODES = ["LoadImageMask", "SolidMask", "InvertMask", "MaskComposite", "GrowMask", "FeatherMask",
              "ThresholdMask", "MaskToImage", "ImageToMask", "ImageCompositeMasked", "ImageBlend", "ImageCrop",
              "ImageBlur", "ImageSharpen", "EmptyImage", "ImageBatch", "RepeatImageBatch", "RebatchLatents",
              "LatentComposite"]
SOURCES: dict[str, Any] = {}  # tensors handed to workflows by the Test* source nodes, by key


def _source(kind: str, listed: bool = False) -> type:
    class Source:
        RETURN_TYPES = (kind,)
        OUTPUT_IS_LIST = (listed,)
        FUNCTION = "get"
        CATEGORY = "testing"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"key": ("STRING", {"default": ""})}}

        def get(self, key: str):
            return (SOURCES[key],)

    return Source


@pytest.fixture
def masks_registry(registry):
    for kind in ("IMAGE", "MASK", "LATENT"):
        registry.register(f"Test{kind.title()}", _source(kind))
    registry.register("TestLatentList", _source("LATENT", listed=True))
    yield registry
    SOURCES.clear()


def given(kind: str, value) -> dict:
    """A source node handing `value` (a tensor, a latent dict, or for LatentList a list of them) onward."""
    key = f"t{len(SOURCES)}"
    SOURCES[key] = value
    return {"class_type": "TestLatentList" if kind == "LatentList" else f"Test{kind.title()}",
            "inputs": {"key": key}}


def run(registry, workflow: dict, node: str = "out"):
    """Validate and execute; every value of the node's first output (one, or the list of an output list)."""
    workflow = {**workflow, "shown": {"class_type": "PreviewAny", "inputs": {"source": [node, 0]}}}
    checked = validate(workflow, registry)
    assert checked.valid, [str(e) for e in checked.errors]
    result = Executor(registry).execute(checked.plan)
    assert result.status == "success", result.error
    return result.output_value(node)


def run_error(registry, workflow: dict) -> str:
    workflow = {**workflow, "shown": {"class_type": "PreviewAny", "inputs": {"source": ["out", 0]}}}
    checked = validate(workflow, registry)
    assert checked.valid, [str(e) for e in checked.errors]
    result = Executor(registry).execute(checked.plan)
    assert result.status == "error"
    return result.error["exception_message"]


def close(actual, expected) -> None:
    expected = torch.as_tensor(expected, dtype=torch.float32)
    assert tuple(actual.shape) == tuple(expected.shape)
    assert torch.allclose(actual.float(), expected, atol=1e-5), actual


def _normal(spec: list) -> tuple:
    """(type, options) of one input, with the catalog's V3 COMBO form folded into the classic list form."""
    kind, options = spec[0], dict(spec[1]) if len(spec) > 1 else {}
    if kind == "COMBO":
        kind = options.pop("options")
        options.pop("multiselect", None)
    options.pop("tooltip", None)
    return (kind if isinstance(kind, str) else "COMBO", kind if isinstance(kind, list) else None, options)


def test_object_info_matches_comfyuis_catalog(masks_registry):
    catalog = json.loads(shared_catalog().read_text(encoding="utf-8"))
    for name in MASK_NODES:
        ours, theirs = masks_registry.node_info(name), catalog[name]
        assert ours["input_order"] == theirs["input_order"], name
        assert ours["output"] == theirs["output"] and ours["category"] == theirs["category"], name
        assert ours["output_is_list"] == theirs["output_is_list"], name
        for section, names in theirs["input_order"].items():
            for field in names:
                mine, comfy = _normal(ours["input"][section][field]), _normal(theirs["input"][section][field])
                if name == "LoadImageMask" and field == "image":  # the files of each input folder
                    assert mine[0] == comfy[0] == "COMBO" and mine[2] == comfy[2]
                    continue
                assert mine == comfy, (name, field, mine, comfy)


def test_load_image_mask_inverts_alpha_and_reads_colour_channels(masks_registry, isolated_folders):
    picture = Image.new("RGBA", (2, 1))
    picture.putpixel((0, 0), (255, 0, 51, 0))
    picture.putpixel((1, 0), (0, 102, 0, 255))
    picture.save(isolated_folders / "input" / "cut.png")
    picture.convert("RGB").save(isolated_folders / "input" / "flat.png")
    load = {"class_type": "LoadImageMask", "inputs": {"image": "cut.png", "channel": "alpha"}}
    close(run(masks_registry, {"out": load}), [[[1.0, 0.0]]])  # transparent = 1, opaque = 0
    load["inputs"]["channel"] = "blue"
    close(run(masks_registry, {"out": load}), [[[0.2, 0.0]]])
    load["inputs"]["channel"] = "green"
    close(run(masks_registry, {"out": load}), [[[0.0, 0.4]]])
    load["inputs"].update(image="flat.png", channel="alpha")  # no alpha: fully opaque, so all 0
    close(run(masks_registry, {"out": load}), [[[0.0, 0.0]]])
    load["inputs"].update(image="nope.png", channel="red")
    missing = validate({"out": load, "shown": {"class_type": "PreviewAny", "inputs": {"source": ["out", 0]}}},
                       masks_registry)
    assert not missing.valid and "nope.png" in str(missing.errors[0])


def test_image_to_mask_and_back(masks_registry):
    image = torch.tensor([[[[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]]])
    flow = {"img": given("IMAGE", image),
            "out": {"class_type": "ImageToMask", "inputs": {"image": ["img", 0], "channel": "green"}}}
    close(run(masks_registry, flow), [[[0.2, 0.6]]])
    flow["out"]["inputs"]["channel"] = "alpha"
    close(run(masks_registry, flow), [[[0.4, 0.8]]])
    flow["img"] = given("IMAGE", image[..., :3])
    assert "no alpha channel" in run_error(masks_registry, flow)
    back = {"m": given("MASK", torch.tensor([[[0.25, 1.0]]])),
            "out": {"class_type": "MaskToImage", "inputs": {"mask": ["m", 0]}}}
    close(run(masks_registry, back), [[[[0.25] * 3, [1.0] * 3]]])


def _composite(dest: float, src: float, x: int, y: int, operation: str) -> dict:
    return {"d": {"class_type": "SolidMask", "inputs": {"value": dest, "width": 4, "height": 3}},
            "s": {"class_type": "SolidMask", "inputs": {"value": src, "width": 2, "height": 2}},
            "out": {"class_type": "MaskComposite", "inputs": {"destination": ["d", 0], "source": ["s", 0],
                                                              "x": x, "y": y, "operation": operation}}}


@pytest.mark.parametrize(("operation", "inside"), [("add", 1.0), ("subtract", 0.0), ("multiply", 0.5625),
                                                    ("and", 1.0), ("or", 1.0), ("xor", 0.0)])
def test_mask_composite_places_the_source_and_clips_to_0_1(masks_registry, operation, inside):
    out = run(masks_registry, _composite(0.75, 0.75, 3, 1, operation))
    expected = torch.full((1, 3, 4), 0.75)
    expected[0, 1:3, 3] = inside  # only the part of the 2x2 source that lies over the destination
    close(out, expected)


def test_mask_composite_logic_rounds_at_one_half(masks_registry):
    close(run(masks_registry, _composite(0.4, 0.6, 0, 0, "or")),
          [[[1.0, 1.0, 0.4, 0.4], [1.0, 1.0, 0.4, 0.4], [0.4, 0.4, 0.4, 0.4]]])
    close(run(masks_registry, _composite(0.2, 0.9, 9, 9, "add")), torch.full((1, 3, 4), 0.2))  # off the edge


def _dot(size: int = 5) -> torch.Tensor:
    mask = torch.zeros((1, size, size))
    mask[0, size // 2, size // 2] = 1.0
    return mask


def test_grow_mask_tapered_corners_grow_a_diamond(masks_registry):
    flow = {"m": given("MASK", _dot()),
            "out": {"class_type": "GrowMask", "inputs": {"mask": ["m", 0], "expand": 1, "tapered_corners": True}}}
    cross = torch.zeros((1, 5, 5))
    cross[0, 1:4, 2] = cross[0, 2, 1:4] = 1.0
    close(run(masks_registry, flow), cross)
    flow["out"]["inputs"]["tapered_corners"] = False
    square = torch.zeros((1, 5, 5))
    square[0, 1:4, 1:4] = 1.0
    close(run(masks_registry, flow), square)
    flow["out"]["inputs"].update(expand=2, tapered_corners=True)
    out = run(masks_registry, flow)
    assert out.sum() == 13 and out[0, 0, 2] == 1 and out[0, 0, 0] == 0 and out[0, 1, 1] == 1  # radius-2 diamond
    flow["out"]["inputs"].update(expand=999999 % 16384, tapered_corners=False)  # saturates: all covered
    close(run(masks_registry, flow), torch.ones((1, 5, 5)))


def test_grow_mask_negative_expand_erodes(masks_registry):
    square = torch.zeros((1, 5, 5))
    square[0, 1:4, 1:4] = 1.0
    flow = {"m": given("MASK", square),
            "out": {"class_type": "GrowMask", "inputs": {"mask": ["m", 0], "expand": -1, "tapered_corners": True}}}
    close(run(masks_registry, flow), _dot())
    edge = torch.ones((1, 3, 3))  # the border repeats the edge, so a full mask stays full
    flow["m"] = given("MASK", edge)
    close(run(masks_registry, flow), edge)


def test_feather_mask_ramps_edges_as_comfyui(masks_registry):
    flow = {"m": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 5, "height": 1}},
            "out": {"class_type": "FeatherMask",
                    "inputs": {"mask": ["m", 0], "left": 2, "top": 0, "right": 0, "bottom": 0}}}
    close(run(masks_registry, flow), [[[0.5, 1.0, 1.0, 1.0, 1.0]]])
    flow["out"]["inputs"].update(left=0, right=2)  # ComfyUI's loop scales column -0 (the first) by 1/2
    close(run(masks_registry, flow), [[[0.5, 1.0, 1.0, 1.0, 1.0]]])
    flow["out"]["inputs"].update(right=4)  # columns 0, -1, -2, -3 by 1/4, 2/4, 3/4, 4/4
    close(run(masks_registry, flow), [[[0.25, 1.0, 1.0, 0.75, 0.5]]])


def test_threshold_solid_and_invert(masks_registry):
    mask = torch.tensor([[[0.2, 0.5, 0.8]]])
    flow = {"m": given("MASK", mask),
            "t": {"class_type": "ThresholdMask", "inputs": {"mask": ["m", 0], "value": 0.5}},
            "out": {"class_type": "InvertMask", "inputs": {"mask": ["t", 0]}}}
    close(run(masks_registry, flow), [[[1.0, 1.0, 0.0]]])
    solid = {"out": {"class_type": "SolidMask", "inputs": {"value": 0.3, "width": 3, "height": 2}}}
    close(run(masks_registry, solid), torch.full((1, 2, 3), 0.3))


def _paste(resize: bool = False, mask: Any = None, x: int = 1, y: int = 1) -> dict:
    flow = {"d": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 3, "batch_size": 2, "color": 0}},
            "s": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 1,
                                                         "color": 0xFFFFFF}},
            "out": {"class_type": "ImageCompositeMasked",
                    "inputs": {"destination": ["d", 0], "source": ["s", 0], "x": x, "y": y,
                               "resize_source": resize}}}
    if mask is not None:
        flow["m"] = given("MASK", mask)
        flow["out"]["inputs"]["mask"] = ["m", 0]
    return flow


def test_image_composite_masked_without_and_with_mask(masks_registry):
    expected = torch.zeros((2, 3, 4, 3))
    expected[:, 1:3, 1:3] = 1.0  # the source batch of one repeats over the destination's two
    close(run(masks_registry, _paste()), expected)
    expected = torch.zeros((2, 3, 4, 3))
    expected[:, 1, 3] = 1.0  # at x=3 only the source's first column is inside
    close(run(masks_registry, _paste(x=3, y=1, mask=torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]))), expected)
    expected = torch.zeros((2, 3, 4, 3))
    expected[:, 1:3, 1:3] = torch.tensor([[0.25, 0.5], [0.75, 1.0]]).unsqueeze(-1)
    close(run(masks_registry, _paste(mask=torch.tensor([[[0.25, 0.5], [0.75, 1.0]]]))), expected)


def test_image_composite_masked_resize_source_covers_the_destination(masks_registry):
    close(run(masks_registry, _paste(resize=True, x=0, y=0)), torch.ones((2, 3, 4, 3)))
    expected = torch.zeros((2, 3, 4, 3))
    expected[:, 2, 2:4] = 1.0  # resized to 4x3 and placed at (2, 2): only its top-left 2x1 is inside
    close(run(masks_registry, _paste(resize=True, x=2, y=2)), expected)


BLEND_CASES = [  # (mode, factor, image1 pixel, image2 pixel, result) worked out from ComfyUI's formulas
    ("normal", 0.5, 0.2, 0.6, 0.4),
    ("multiply", 1.0, 0.5, 0.4, 0.2),
    ("screen", 1.0, 0.5, 0.4, 0.7),  # 1 - 0.5 * 0.6
    ("overlay", 1.0, 0.25, 0.4, 0.2),  # dark base: 2ab
    ("overlay", 1.0, 0.75, 0.4, 0.7),  # light base: 1 - 2(1-a)(1-b) = 1 - 2 * 0.25 * 0.6
    ("soft_light", 1.0, 0.5, 0.25, 0.375),  # b <= 0.5: a - (1-2b) a (1-a) = 0.5 - 0.5 * 0.25
    ("soft_light", 1.0, 0.25, 0.75, 0.375),  # b > 0.5, a <= 0.25: a + (2b-1)(g(a)-a), g(0.25) = 0.5
    ("soft_light", 1.0, 0.64, 1.0, 0.8),  # a > 0.25: g = sqrt(a)
    ("difference", 1.0, 0.3, 0.8, 0.0),  # a - b, clipped at 0
    ("difference", 0.5, 0.8, 0.3, 0.65),  # 0.8 * 0.5 + 0.5 * 0.5
]


@pytest.mark.parametrize(("mode", "factor", "first", "second", "result"), BLEND_CASES)
def test_image_blend_modes(masks_registry, mode, factor, first, second, result):
    flow = {"a": given("IMAGE", torch.full((1, 2, 2, 3), first)), "b": given("IMAGE", torch.full((1, 2, 2, 3), second)),
            "out": {"class_type": "ImageBlend", "inputs": {"image1": ["a", 0], "image2": ["b", 0],
                                                           "blend_factor": factor, "blend_mode": mode}}}
    close(run(masks_registry, flow), torch.full((1, 2, 2, 3), result))


def test_image_blend_resizes_image2_to_image1(masks_registry):
    flow = {"a": given("IMAGE", torch.full((1, 4, 6, 3), 0.2)), "b": given("IMAGE", torch.full((1, 2, 2, 3), 0.6)),
            "out": {"class_type": "ImageBlend", "inputs": {"image1": ["a", 0], "image2": ["b", 0],
                                                           "blend_factor": 0.5, "blend_mode": "normal"}}}
    close(run(masks_registry, flow), torch.full((1, 4, 6, 3), 0.4))


def test_image_crop_clamps_the_origin(masks_registry):
    image = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4, 1) / 12
    flow = {"i": given("IMAGE", image),
            "out": {"class_type": "ImageCrop", "inputs": {"image": ["i", 0], "width": 2, "height": 5, "x": 1,
                                                          "y": 1}}}
    close(run(masks_registry, flow), image[:, 1:3, 1:3])
    flow["out"]["inputs"].update(x=100, y=100)  # ComfyUI keeps the last row and column
    close(run(masks_registry, flow), image[:, 2:3, 3:4])


def _impulse() -> torch.Tensor:
    image = torch.zeros((1, 5, 5, 1))
    image[0, 2, 2, 0] = 1.0
    return image


def test_image_blur_spreads_an_impulse_by_comfyuis_kernel(masks_registry):
    flow = {"i": given("IMAGE", _impulse()),
            "out": {"class_type": "ImageBlur", "inputs": {"image": ["i", 0], "blur_radius": 1, "sigma": 1.0}}}
    out = run(masks_registry, flow)
    # a 3x3 grid over -1..1 with sigma 1: weights exp(-d^2/2) for d^2 = 0, 1, 2, normalised
    side, corner = math.exp(-0.5), math.exp(-1.0)
    total = 1 + 4 * side + 4 * corner
    assert out.shape == (1, 5, 5, 1) and abs(out.sum().item() - 1.0) < 1e-5
    weights = [[corner, side, corner], [side, 1.0, side], [corner, side, corner]]
    close(out[0, 1:4, 1:4, 0], [[w / total for w in row] for row in weights])
    flow["i"] = given("IMAGE", torch.full((1, 4, 4, 3), 0.3))  # a flat image stays flat (reflected border)
    close(run(masks_registry, flow), torch.full((1, 4, 4, 3), 0.3))
    flow["out"]["inputs"]["blur_radius"] = 4
    assert "radius of 4" in run_error(masks_registry, flow)


def test_image_sharpen_keeps_flat_areas_and_lifts_an_impulse(masks_registry):
    flow = {"i": given("IMAGE", torch.full((1, 4, 4, 3), 0.3)),
            "out": {"class_type": "ImageSharpen",
                    "inputs": {"image": ["i", 0], "sharpen_radius": 1, "sigma": 1.0, "alpha": 1.0}}}
    close(run(masks_registry, flow), torch.full((1, 4, 4, 3), 0.3))
    flow["i"] = given("IMAGE", _impulse() * 0.5)
    out = run(masks_registry, flow)
    assert out[0, 2, 2, 0] == 1.0 and out[0, 1, 2, 0] == 0.0 and out[0, 0, 0, 0] == 0.0  # clipped both ways
    flow["out"]["inputs"]["alpha"] = 0.0  # no sharpening: the kernel is the identity
    close(run(masks_registry, flow), _impulse() * 0.5)


def test_empty_image_batch_and_repeat(masks_registry):
    flow = {"a": {"class_type": "EmptyImage", "inputs": {"width": 3, "height": 2, "batch_size": 2,
                                                         "color": 0xFF8000}},
            "b": {"class_type": "EmptyImage", "inputs": {"width": 6, "height": 4, "batch_size": 1, "color": 0x0000FF}},
            "ab": {"class_type": "ImageBatch", "inputs": {"image1": ["a", 0], "image2": ["b", 0]}},
            "out": {"class_type": "RepeatImageBatch", "inputs": {"image": ["ab", 0], "amount": 2}}}
    out = run(masks_registry, flow)
    orange, blue = torch.tensor([1.0, 128 / 255, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    expected = torch.stack([orange, orange, blue] * 2).reshape(6, 1, 1, 3).expand(6, 2, 3, 3)
    close(out, expected)  # image2 was resized to image1's 3x2, then the batch of 3 repeated twice


def test_rebatch_latents_regroups_and_keeps_indexes(masks_registry):
    flow = {"l": {"class_type": "EmptyLatentImage", "inputs": {"width": 16, "height": 16, "batch_size": 5}},
            "twos": {"class_type": "RebatchLatents", "inputs": {"latents": ["l", 0], "batch_size": 2}},
            "out": {"class_type": "RebatchLatents", "inputs": {"latents": ["twos", 0], "batch_size": 3}}}
    twos = run(masks_registry, flow, "twos")
    assert [b["samples"].shape[0] for b in twos] == [2, 2, 1]
    out = run(masks_registry, flow)
    assert [b["samples"].shape for b in out] == [(3, 4, 2, 2), (2, 4, 2, 2)]
    assert [b["batch_index"] for b in out] == [[0, 1, 2], [3, 4]]
    assert all("noise_mask" not in b for b in out)  # all-ones masks are dropped


def test_rebatch_latents_keeps_noise_masks_and_splits_at_size_changes(masks_registry):
    small = {"samples": torch.zeros((2, 4, 1, 1)), "noise_mask": torch.zeros((2, 1, 8, 8))}
    tall = {"samples": torch.ones((1, 4, 2, 1))}
    tall_masked = {"samples": torch.ones((1, 4, 2, 1)), "noise_mask": torch.full((1, 1, 16, 8), 0.5),
                   "batch_index": [7]}
    flow = {"l": given("LatentList", [small, tall, tall_masked]),
            "out": {"class_type": "RebatchLatents", "inputs": {"latents": ["l", 0], "batch_size": 4}}}
    first, second = run(masks_registry, flow)  # the size change starts a new batch
    assert first["samples"].shape == (2, 4, 1, 1) and first["batch_index"] == [0, 1]
    assert first["noise_mask"].shape == (2, 1, 8, 8) and first["noise_mask"].sum() == 0
    assert second["samples"].shape == (2, 4, 2, 1) and second["batch_index"] == [2, 7]
    close(second["noise_mask"][:, 0, 0, 0], [1.0, 0.5])  # the unmasked latent's mask is all ones


def _latent(batch: int, height: int, width: int, value: float) -> dict:
    return {"samples": torch.full((batch, 4, height, width), value)}


def test_latent_composite_pastes_at_latent_coordinates(masks_registry):
    flow = {"to": given("LATENT", _latent(1, 3, 4, 0.0)), "from": given("LATENT", _latent(1, 2, 2, 1.0)),
            "out": {"class_type": "LatentComposite",
                    "inputs": {"samples_to": ["to", 0], "samples_from": ["from", 0], "x": 24, "y": 8,
                               "feather": 0}}}
    expected = torch.zeros((1, 4, 3, 4))
    expected[:, :, 1:3, 3] = 1.0  # x=24 px is latent column 3; the source is cut at the edge
    close(run(masks_registry, flow)["samples"], expected)
    # feather 16 px = 2 latent pixels of ramp on the inner edges (left and right here, not top and bottom):
    # each of the source's 2 columns is the outer line of one ramp (1/2) and the inner of the other (2/2)
    flow["to"] = given("LATENT", _latent(1, 3, 4, 0.2))
    flow["from"] = given("LATENT", _latent(1, 3, 2, 1.0))
    flow["out"]["inputs"].update(x=8, y=0, feather=16)
    expected = torch.full((1, 4, 3, 4), 0.2)
    expected[:, :, :, 1:3] = 0.5 * 1.0 + 0.5 * 0.2
    close(run(masks_registry, flow)["samples"], expected)
    flow["out"]["inputs"].update(x=200, feather=0)  # past the edge: unchanged
    close(run(masks_registry, flow)["samples"], torch.full((1, 4, 3, 4), 0.2))
