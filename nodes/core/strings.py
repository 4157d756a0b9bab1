"""String nodes with ComfyUI's names and inputs (StringConcatenate, StringReplace, RegexMatch, RegexExtract)
plus NodeWeaver's TextTemplate."""

from __future__ import annotations

import json
import re
import string
from typing import Any

REGEX_MODES = ["First Match", "All Matches", "First Group", "All Groups"]


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    flags = 0
    if case_insensitive:
        flags |= re.IGNORECASE
    if multiline:
        flags |= re.MULTILINE
    if dotall:
        flags |= re.DOTALL
    return flags


def _check_pattern(regex_pattern: Any) -> bool | str:
    if regex_pattern is None:  # linked: known only at run time
        return True
    try:
        re.compile(str(regex_pattern))
    except re.error as exc:
        return f"invalid regular expression {regex_pattern!r}: {exc}"
    return True


class StringConcatenate:
    DESCRIPTION = "Joins two texts with a delimiter between them."
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/string"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "string_a": ("STRING", {"multiline": True}),
            "string_b": ("STRING", {"multiline": True}),
            "delimiter": ("STRING", {"default": "", "multiline": False}),
        }}

    def execute(self, string_a: str, string_b: str, delimiter: str) -> tuple[str]:
        return (delimiter.join((string_a, string_b)),)


class StringReplace:
    DESCRIPTION = "Replaces every occurrence of a text with another."
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/string"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "string": ("STRING", {"multiline": True}),
            "find": ("STRING", {"multiline": True}),
            "replace": ("STRING", {"multiline": True}),
        }}

    def execute(self, string: str, find: str, replace: str) -> tuple[str]:
        return (string.replace(find, replace),)


class RegexMatch:
    DESCRIPTION = "Tells whether a regular expression matches somewhere in a text."
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("matches",)
    FUNCTION = "execute"
    CATEGORY = "utils/string"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "string": ("STRING", {"multiline": True}),
            "regex_pattern": ("STRING", {"multiline": True}),
            "case_insensitive": ("BOOLEAN", {"default": True}),
            "multiline": ("BOOLEAN", {"default": False}),
            "dotall": ("BOOLEAN", {"default": False}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, regex_pattern: Any = None) -> bool | str:
        return _check_pattern(regex_pattern)

    def execute(self, string: str, regex_pattern: str, case_insensitive: bool = True, multiline: bool = False,
                dotall: bool = False) -> tuple[bool]:
        pattern = re.compile(regex_pattern, _flags(case_insensitive, multiline, dotall))
        return (pattern.search(string) is not None,)


class RegexExtract:
    DESCRIPTION = "Extracts the first or all matches (or capture groups) of a regular expression from a text."
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/string"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "string": ("STRING", {"multiline": True}),
            "regex_pattern": ("STRING", {"multiline": True}),
            "mode": (REGEX_MODES, {}),
            "case_insensitive": ("BOOLEAN", {"default": True}),
            "multiline": ("BOOLEAN", {"default": False}),
            "dotall": ("BOOLEAN", {"default": False}),
            "group_index": ("INT", {"default": 1, "min": 0, "max": 100}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, regex_pattern: Any = None) -> bool | str:
        return _check_pattern(regex_pattern)

    def execute(self, string: str, regex_pattern: str, mode: str = "First Match", case_insensitive: bool = True,
                multiline: bool = False, dotall: bool = False, group_index: int = 1) -> tuple[str]:
        pattern = re.compile(regex_pattern, _flags(case_insensitive, multiline, dotall))

        def group(match: re.Match) -> str | None:
            if group_index <= (pattern.groups or 0):
                return match.group(group_index)
            return None

        if mode == "First Match":
            match = pattern.search(string)
            return (match.group(0) if match else "",)
        if mode == "All Matches":
            return ("\n".join(m.group(0) for m in pattern.finditer(string)),)
        if mode == "First Group":
            match = pattern.search(string)
            found = group(match) if match else None
            return (found or "",)
        if mode == "All Groups":
            return ("\n".join(g for m in pattern.finditer(string) if (g := group(m))),)
        raise ValueError(f"unknown mode {mode!r}; expected one of {REGEX_MODES}")


class TemplateValuesError(ValueError):
    """The values for a text template are not a JSON object nor `key=value` lines."""


def parse_template_values(values: str) -> dict[str, str]:
    """Values as a JSON object, or one `name=value` (or `name: value`) per line."""
    text = (values or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateValuesError(f"values look like JSON but do not parse: {exc}") from exc
        if not isinstance(data, dict):
            raise TemplateValuesError("values JSON must be an object of name → value")
        return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in data.items()}
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = re.match(r"\s*([^=:：\s]+)\s*[=:：]\s*(.*)$", line)
        if not match:
            raise TemplateValuesError(f"line {number} of values is not 'name=value': {line!r}")
        result[match.group(1)] = match.group(2).strip()
    return result


def template_fields(template: str) -> list[str]:
    """The `{name}` placeholders of a template (`{{` and `}}` are literal braces)."""
    names = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field not in names:
            names.append(field)
    return names


class TextTemplate:
    DESCRIPTION = ("Fills {name} placeholders in a template with values given as a JSON object or as "
                   "name=value lines. Use {{ and }} for literal braces.")
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"
    CATEGORY = "utils/string"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "template": ("STRING", {"multiline": True, "default": "Hello, {name}!",
                                    "tooltip": "Text with {name} placeholders."}),
            "values": ("STRING", {"multiline": True, "default": "name=world",
                                  "tooltip": "JSON object or one name=value per line."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, template: Any = None, values: Any = None) -> bool | str:
        try:
            fields = template_fields(template) if isinstance(template, str) else None
            given = parse_template_values(values) if isinstance(values, str) else None
        except (ValueError, TemplateValuesError) as exc:
            return str(exc)
        if fields is not None and given is not None:
            missing = [f for f in fields if f not in given]
            if missing:
                return f"no value for placeholder(s) {', '.join(missing)}"
        return True

    def execute(self, template: str, values: str) -> tuple[str]:
        given = parse_template_values(values)
        missing = [f for f in template_fields(template) if f not in given]
        if missing:
            raise ValueError(f"no value for placeholder(s) {', '.join(missing)} in the template")
        return (template.format_map(given),)


NODE_CLASS_MAPPINGS = {
    "StringConcatenate": StringConcatenate,
    "StringReplace": StringReplace,
    "RegexMatch": RegexMatch,
    "RegexExtract": RegexExtract,
    "TextTemplate": TextTemplate,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StringConcatenate": "Concatenate",
    "StringReplace": "Replace",
    "RegexMatch": "Regex Match",
    "RegexExtract": "Regex Extract",
    "TextTemplate": "Text Template",
}
