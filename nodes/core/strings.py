"""String nodes with ComfyUI's names and inputs (StringConcatenate, StringReplace, RegexMatch, RegexExtract)
plus NodeWeaver's TextTemplate.

Patterns come from users, so they run with the `regex` package under a time bound (REGEX_TIMEOUT_S) and
without holding the GIL: a pattern that backtracks catastrophically fails its node with a clear error and the
server keeps answering. StringReplace replaces literal text (as ComfyUI's does), so it needs no bound."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from runtime.errors import BadRequest, NodeWeaverError

if TYPE_CHECKING:  # `regex` itself loads on first use: registering these nodes should not cost its import
    import regex

REGEX_MODES = ["First Match", "All Matches", "First Group", "All Groups"]
# User patterns run with the `regex` package, which gives up after this many seconds and releases the GIL while
# it matches: a catastrophically backtracking pattern fails its node instead of freezing the whole server.
REGEX_TIMEOUT_S: float = 2.0

T = TypeVar("T")


class InvalidRegex(BadRequest):
    """A pattern that does not compile; VALIDATE_INPUTS catches literal ones, this linked ones at run time."""

    kind = "invalid_regex"


class RegexTimeout(NodeWeaverError):
    """A user pattern ran past REGEX_TIMEOUT_S (usually nested quantifiers backtracking on a long text)."""

    kind = "regex_timeout"
    status = 400


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    import regex

    flags = 0
    if case_insensitive:
        flags |= regex.IGNORECASE
    if multiline:
        flags |= regex.MULTILINE
    if dotall:
        flags |= regex.DOTALL
    return flags


def _check_pattern(regex_pattern: Any) -> bool | str:
    if regex_pattern is None:  # linked: known only at run time
        return True
    import regex

    try:
        regex.compile(str(regex_pattern))
    except regex.error as exc:
        return f"invalid regular expression {regex_pattern!r}: {exc}"
    return True


def _compile(regex_pattern: str, flags: int) -> regex.Pattern:
    """Compile at run time too: a linked pattern was never seen by VALIDATE_INPUTS."""
    import regex

    try:
        return regex.compile(regex_pattern, flags)
    except regex.error as exc:
        raise InvalidRegex(f"invalid regular expression {regex_pattern!r}: {exc}",
                           details={"pattern": regex_pattern}) from None


def _bounded(pattern: regex.Pattern, work: Callable[[float], T]) -> T:
    """Run `work(timeout)` and turn the regex engine's timeout into a clear node error."""
    limit = REGEX_TIMEOUT_S
    try:
        return work(limit)
    except TimeoutError:
        shown = pattern.pattern if len(pattern.pattern) <= 200 else pattern.pattern[:200] + "..."
        raise RegexTimeout(f"pattern {shown!r} took longer than {limit:g} s; it may backtrack catastrophically "
                           "(nested quantifiers such as (a+)+ on a long text)",
                           details={"pattern": pattern.pattern, "timeout_s": limit}) from None


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
        pattern = _compile(regex_pattern, _flags(case_insensitive, multiline, dotall))
        return (_bounded(pattern, lambda limit: pattern.search(string, timeout=limit)) is not None,)


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
        if mode not in REGEX_MODES:
            raise BadRequest(f"unknown mode {mode!r}; expected one of {REGEX_MODES}", kind="invalid_mode")
        pattern = _compile(regex_pattern, _flags(case_insensitive, multiline, dotall))
        if mode.startswith("First"):
            match = _bounded(pattern, lambda limit: pattern.search(string, timeout=limit))
            matches = [match] if match else []
        else:  # the timeout covers the whole scan, not each match
            matches = _bounded(pattern, lambda limit: list(pattern.finditer(string, timeout=limit)))
        if mode in ("First Match", "All Matches"):
            found = [m.group(0) for m in matches]
        elif group_index <= pattern.groups:
            found = [g for m in matches if (g := m.group(group_index))]
        else:
            found = []
        return ("\n".join(found),)


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
