"""Nodes for the validation-parity tests: VALIDATE_INPUTS taking a link-only input, `input_types`, async."""

import asyncio


class ParityIntSource:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "emit"
    CATEGORY = "test/parity"

    def emit(self, value):
        return (value,)


class ParityFloatSource:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 0.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "emit"
    CATEGORY = "test/parity"

    def emit(self, value):
        return (value,)


class ParitySocketLiteral:
    """A link-only input whose VALIDATE_INPUTS takes it: ComfyUI lets a literal through to that function."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("IMAGE,FLOAT",)}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "double"
    CATEGORY = "test/parity"

    @classmethod
    def VALIDATE_INPUTS(cls, value=None):
        if value is not None and not isinstance(value, float):
            return f"Invalid type of value: {type(value).__name__}"
        return True

    def double(self, value):
        return (value * 2,)


class ParityInputTypes:
    """Judges its linked inputs' types itself, so validation must not refuse them first."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("IMAGE,FLOAT",), "scale": ("IMAGE,FLOAT",)}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "same"
    CATEGORY = "test/parity"

    @classmethod
    def VALIDATE_INPUTS(cls, input_types, value=None):
        if input_types.get("value", "FLOAT") not in ("IMAGE", "FLOAT"):
            return f"Invalid type of value: {input_types['value']}"
        return True

    def same(self, value, scale):
        return (float(value) * scale,)


class ParityAsyncValidate:
    """An async VALIDATE_INPUTS: its verdict counts only when awaited (a coroutine object is not True)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 1.0}), "limit": ("FLOAT", {"default": 10.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "same"
    CATEGORY = "test/parity"

    @classmethod
    async def VALIDATE_INPUTS(cls, value, limit):
        await asyncio.sleep(0)
        if value > limit:
            return f"Value {value} exceeds limit {limit}"
        return True

    def same(self, value, limit):
        return (value,)


class ParityImageBatches:
    """Solid grey image batches, OUTPUT_IS_LIST: `sizes` "2,3" gives batches of 2 and 3 images whose greys
    step from `start` by `step`, one per image, so their order after a rebatch can be read back."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sizes": ("STRING", {"default": "1"}), "start": ("FLOAT", {"default": 0.0}),
                             "step": ("FLOAT", {"default": 0.0})}}

    RETURN_TYPES = ("IMAGE",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "make"
    CATEGORY = "test/parity"

    def make(self, sizes, start, step):
        import torch

        batches, grey = [], start
        for count in (int(c) for c in sizes.split(",")):
            batch = torch.ones([count, 4, 4, 3])
            for i in range(count):
                batch[i] *= grey
                grey += step
            batches.append(batch)
        return (batches,)


NODE_CLASS_MAPPINGS = {
    "ParityIntSource": ParityIntSource, "ParityFloatSource": ParityFloatSource,
    "ParitySocketLiteral": ParitySocketLiteral, "ParityInputTypes": ParityInputTypes,
    "ParityAsyncValidate": ParityAsyncValidate, "ParityImageBatches": ParityImageBatches,
}
