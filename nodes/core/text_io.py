"""Text files: LoadText reads from the input folder, SaveText writes to the output folder (ComfyUI-style)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runtime import folders

TEXT_FORMATS = ["txt", "md", "json"]
TEXT_EXTENSIONS = frozenset({".txt", ".md", ".json", ".csv"})
MAX_TEXT_BYTES = 10 * 1024 * 1024


class LoadText:
    DESCRIPTION = "Reads a UTF-8 text file from the input folder (path relative to it)."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "execute"
    CATEGORY = "utils/text"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"path": ("STRING", {"default": "notes.txt",
                                                 "tooltip": "File name relative to the input folder."})}}

    @classmethod
    def VALIDATE_INPUTS(cls, path: Any = None) -> bool | str:
        return folders.check_input_file(path, TEXT_EXTENSIONS, "text")

    @classmethod
    def IS_CHANGED(cls, path: str) -> str:
        try:
            resolved = folders.input_path(path)
            stat = resolved.stat()
        except (OSError, folders.UnsafePathError):
            return "missing"
        return hashlib.sha256(f"{resolved}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()

    def execute(self, path: str) -> tuple[str]:
        resolved = folders.input_path(path)
        if resolved.stat().st_size > MAX_TEXT_BYTES:
            raise ValueError(f"{path} is larger than {MAX_TEXT_BYTES // (1024 * 1024)} MiB")
        return (resolved.read_text(encoding="utf-8", errors="replace"),)


class SaveText:
    DESCRIPTION = "Saves text to a file in the output folder as .txt, .md or .json."
    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True
    CATEGORY = "utils/text"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "text": ("STRING", {"forceInput": True}),
            "filename_prefix": ("STRING", {"default": "NodeWeaver/text",
                                           "tooltip": "Prefix of the file name; may include subfolders."}),
            "format": (TEXT_FORMATS, {"default": "txt"}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix: Any = None) -> bool | str:
        return folders.check_output_prefix(filename_prefix)

    def execute(self, text: str, filename_prefix: str = "NodeWeaver/text", format: str = "txt") -> dict:
        if format not in TEXT_FORMATS:
            raise ValueError(f"format must be one of {TEXT_FORMATS}, got {format!r}")
        body = text
        if format == "json":
            try:
                body = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
            except (json.JSONDecodeError, TypeError):
                body = json.dumps({"text": text}, ensure_ascii=False, indent=2)
        path, subfolder, filename = folders.next_output_file(filename_prefix, format)
        path.write_text(body, encoding="utf-8")
        return {"ui": {"text": [text], "files": [{"filename": filename, "subfolder": subfolder, "type": "output"}]}}


NODE_CLASS_MAPPINGS = {"LoadText": LoadText, "SaveText": SaveText}
NODE_DISPLAY_NAME_MAPPINGS = {"LoadText": "Load Text", "SaveText": "Save Text"}
