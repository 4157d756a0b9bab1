"""Flow and inspection: a lazy switch (only the chosen branch runs) and PreviewAny."""

from __future__ import annotations

import json
from typing import Any


class ComfySwitchNode:
    DESCRIPTION = ("Passes on_true or on_false through depending on switch. The inputs are lazy: only the "
                   "chosen branch is computed.")
    RETURN_TYPES = ("*",)
    RETURN_NAMES = ("output",)
    FUNCTION = "execute"
    CATEGORY = "logic"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "switch": ("BOOLEAN", {"default": False}),
            "on_false": ("*", {"lazy": True}),
            "on_true": ("*", {"lazy": True}),
        }}

    def check_lazy_status(self, switch: bool, on_false: Any = None, on_true: Any = None) -> list[str]:
        if switch and on_true is None:
            return ["on_true"]
        if not switch and on_false is None:
            return ["on_false"]
        return []

    def execute(self, switch: bool, on_false: Any = None, on_true: Any = None) -> tuple[Any]:
        return (on_true if switch else on_false,)


def preview_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, indent=2)
    except (TypeError, ValueError):
        return repr(value)


class PreviewAny:
    DESCRIPTION = "Shows any value as text in the results."
    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True
    CATEGORY = "utils"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"source": ("*", {})}}

    def main(self, source: Any = None) -> dict:
        return {"ui": {"text": [preview_text(source)]}}


NODE_CLASS_MAPPINGS = {"ComfySwitchNode": ComfySwitchNode, "PreviewAny": PreviewAny}
NODE_DISPLAY_NAME_MAPPINGS = {"ComfySwitchNode": "Switch", "PreviewAny": "Preview Any"}
