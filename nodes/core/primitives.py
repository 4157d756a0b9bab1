"""ComfyUI's primitive nodes: a constant value as an output socket (names and inputs as in ComfyUI)."""

from __future__ import annotations

from typing import Any

INT_LIMIT = 9223372036854775807


class _Primitive:
    FUNCTION = "execute"
    CATEGORY = "utils/primitive"
    DESCRIPTION = ""

    def execute(self, value: Any) -> tuple[Any]:
        return (value,)


class PrimitiveString(_Primitive):
    DESCRIPTION = "A constant single-line text."
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("STRING", {"multiline": False})}}


class PrimitiveStringMultiline(_Primitive):
    DESCRIPTION = "A constant multi-line text."
    RETURN_TYPES = ("STRING",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("STRING", {"multiline": True})}}


class PrimitiveInt(_Primitive):
    DESCRIPTION = "A constant integer."
    RETURN_TYPES = ("INT",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("INT", {"min": -INT_LIMIT, "max": INT_LIMIT,
                                               "control_after_generate": True})}}


class PrimitiveFloat(_Primitive):
    DESCRIPTION = "A constant floating-point number."
    RETURN_TYPES = ("FLOAT",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("FLOAT", {"min": -INT_LIMIT, "max": INT_LIMIT})}}


class PrimitiveBoolean(_Primitive):
    DESCRIPTION = "A constant true/false value."
    RETURN_TYPES = ("BOOLEAN",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"value": ("BOOLEAN", {})}}


NODE_CLASS_MAPPINGS = {
    "PrimitiveString": PrimitiveString,
    "PrimitiveStringMultiline": PrimitiveStringMultiline,
    "PrimitiveInt": PrimitiveInt,
    "PrimitiveFloat": PrimitiveFloat,
    "PrimitiveBoolean": PrimitiveBoolean,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PrimitiveString": "String",
    "PrimitiveStringMultiline": "String (Multiline)",
    "PrimitiveInt": "Int",
    "PrimitiveFloat": "Float",
    "PrimitiveBoolean": "Boolean",
}
