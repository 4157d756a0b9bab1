"""Nodes that each lean on one piece of ComfyUI's module surface."""

from operator import ne

import comfy.model_management
import comfy.utils
import folder_paths
import server
import torch
from comfy import model_management as mm
from comfy.comfy_types import IO, ComfyNodeABC, InputTypeDict
from comfy.comfy_types.node_typing import CheckLazyMixin
from comfy.utils import ProgressBar, common_upscale, load_torch_file
from comfy_api.v0_0_2 import ComfyAPI, ComfyAPISync
from comfy_execution.graph import ExecutionBlocker
from comfy_execution.graph_utils import GraphBuilder, is_link

import nodes
from nodes import MAX_RESOLUTION

api = ComfyAPI()
api_sync = ComfyAPISync()
routes = server.PromptServer.instance.routes
assert comfy.utils.ProgressBar is ProgressBar and comfy.model_management is mm


class CompatProgress(ComfyNodeABC):
    """Reports `steps` updates through comfy.utils.ProgressBar, then one through ComfyAPISync."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"steps": (IO.INT, {"default": 3, "min": 1, "max": 100})},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = (IO.INT,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, steps, unique_id):
        bar = ProgressBar(steps, node_id=unique_id)
        for _ in range(steps):
            mm.throw_exception_if_processing_interrupted()
            bar.update(1)
        api_sync.execution.set_progress(value=steps, max_value=steps + 1)
        return (steps,)


class CompatAsyncProgress(ComfyNodeABC):
    """An async node reporting through ComfyAPI."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"value": (IO.ANY, {})}}

    RETURN_TYPES = (IO.ANY,)
    FUNCTION = "run"
    CATEGORY = "compat"

    async def run(self, value):
        await api.execution.set_progress(value=0.5, max_value=1.0)
        return (value,)


class CompatSolid(ComfyNodeABC):
    """A constant IMAGE [1, H, W, 3], sized within ComfyUI's MAX_RESOLUTION."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"width": (IO.INT, {"default": 8, "min": 1, "max": MAX_RESOLUTION}),
                             "height": (IO.INT, {"default": 8, "min": 1, "max": MAX_RESOLUTION})}}

    RETURN_TYPES = (IO.IMAGE,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, width, height):
        return (torch.full((1, height, width, 3), 0.5, device=mm.intermediate_device()),)


class CompatUpscale(ComfyNodeABC):
    """Resizes an IMAGE with comfy.utils.common_upscale (which wants channels first)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"image": (IO.IMAGE, {}),
                             "width": (IO.INT, {"default": 16, "min": 1, "max": MAX_RESOLUTION}),
                             "height": (IO.INT, {"default": 16, "min": 1, "max": MAX_RESOLUTION}),
                             "crop": (["disabled", "center"],)}}

    RETURN_TYPES = (IO.IMAGE,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, image, width, height, crop):
        resized = common_upscale(image.movedim(-1, 1), width, height, "bilinear", crop)
        return (resized.movedim(1, -1),)


class CompatDescribe(ComfyNodeABC, CheckLazyMixin):
    """Output node: shows any value as text (tensors by shape), so tests can read results."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"value": (IO.ANY, {})}}

    RETURN_TYPES = (IO.STRING,)
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "compat"

    def run(self, value):
        text = "x".join(str(n) for n in value.shape) if isinstance(value, torch.Tensor) else str(value)
        return {"ui": {"text": [text]}, "result": (text,)}


class CompatLoadTensorSum(ComfyNodeABC):
    """Sums every tensor of a checkpoint file read with comfy.utils.load_torch_file."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"path": (IO.STRING, {"default": ""})}}

    RETURN_TYPES = (IO.FLOAT,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, path):
        state = load_torch_file(path, safe_load=True)
        return (float(sum(t.sum().item() for t in state.values())),)


class CompatEnvironment(ComfyNodeABC):
    """What the module surface says about the environment, as one line of text."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {}}

    RETURN_TYPES = (IO.STRING,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self):
        facts = [
            f"device={comfy.model_management.get_torch_device().type}",
            f"interrupted={mm.processing_interrupted()}",
            f"builtin_int={'PrimitiveInt' in nodes.NODE_CLASS_MAPPINGS}",
            f"number_takes_int={not ne(IO.NUMBER, 'INT')}",  # ComfyUI matches types with !=
            f"link={is_link(['1', 0])}",
            f"input_dir={bool(folder_paths.get_input_directory())}",
        ]
        return (" ".join(facts),)


class CompatBlockUnless(ComfyNodeABC):
    """Passes `value` on when `allow`, else an ExecutionBlocker with `message` (blank: block silently)."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"value": (IO.ANY, {}), "allow": (IO.BOOLEAN, {"default": True}),
                             "message": (IO.STRING, {"default": ""})}}

    RETURN_TYPES = (IO.ANY,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, value, allow, message):
        return (value if allow else ExecutionBlocker(message or None),)


class CompatExpandRepeat(ComfyNodeABC):
    """Expands into a chain of built-in StringConcatenate nodes built with GraphBuilder: `text` + `suffix`
    appended `times` times."""

    @classmethod
    def INPUT_TYPES(cls) -> InputTypeDict:
        return {"required": {"text": (IO.STRING, {"default": ""}), "suffix": (IO.STRING, {"default": "!"}),
                             "times": (IO.INT, {"default": 2, "min": 1, "max": 50})}}

    RETURN_TYPES = (IO.STRING,)
    FUNCTION = "run"
    CATEGORY = "compat"

    def run(self, text, suffix, times):
        graph = GraphBuilder()
        current = text
        for _ in range(times):
            current = graph.node("StringConcatenate", string_a=current, string_b=suffix, delimiter="").out(0)
        return {"result": (current,), "expand": graph.finalize()}


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    CompatProgress, CompatAsyncProgress, CompatSolid, CompatUpscale, CompatDescribe, CompatLoadTensorSum,
    CompatEnvironment, CompatBlockUnless, CompatExpandRepeat)}
NODE_DISPLAY_NAME_MAPPINGS = {"CompatDescribe": "Describe (compat)"}
