"""The core node pack does what its descriptions say (called as the engine will call them)."""

from __future__ import annotations

import json

import pytest

from nodes.core.flow import ComfySwitchNode, PreviewAny
from nodes.core.primitives import PrimitiveInt, PrimitiveString
from nodes.core.strings import RegexExtract, RegexMatch, StringConcatenate, StringReplace, TextTemplate
from nodes.core.text_io import LoadText, SaveText
from runtime.folders import UnsafePathError


def test_primitives_and_strings():
    assert PrimitiveString().execute("x") == ("x",)
    assert PrimitiveInt().execute(3) == (3,)
    assert StringConcatenate().execute("a", "b", ", ") == ("a, b",)
    assert StringReplace().execute("banana", "an", "AN") == ("bANANa",)
    assert RegexMatch().execute("Hello", "^h", case_insensitive=True) == (True,)
    assert RegexMatch().execute("Hello", "^h", case_insensitive=False) == (False,)


@pytest.mark.parametrize("mode, expected", [
    ("First Match", "city: Paris"), ("All Matches", "city: Paris\ncity: Rome"),
    ("First Group", "Paris"), ("All Groups", "Paris\nRome"),
])
def test_regex_extract_modes(mode, expected):
    text = "city: Paris, city: Rome"
    assert RegexExtract().execute(text, r"city: (\w+)", mode=mode, group_index=1) == (expected,)


def test_text_template_json_and_lines():
    node = TextTemplate()
    assert node.execute("你好,{name}!欢迎来到{city}", "name=小明\ncity: 上海") == ("你好,小明!欢迎来到上海",)
    assert node.execute("{a}+{b}", json.dumps({"a": 1, "b": "x"})) == ("1+x",)
    assert node.execute("{{literal}} {a}", "a=1") == ("{literal} 1",)
    with pytest.raises(ValueError, match="city"):
        node.execute("{name} in {city}", "name=A")
    assert TextTemplate.VALIDATE_INPUTS("{x}", "y=1") == "no value for placeholder(s) x"
    assert TextTemplate.VALIDATE_INPUTS("{x}", None) is True  # linked values are known only at run time


def test_load_and_save_text(isolated_folders):
    (isolated_folders / "input" / "notes.txt").write_text("line one\n", encoding="utf-8")
    assert LoadText().execute("notes.txt") == ("line one\n",)
    assert LoadText.VALIDATE_INPUTS("notes.txt") is True
    assert "not found" in LoadText.VALIDATE_INPUTS("missing.txt")
    assert "escapes" in LoadText.VALIDATE_INPUTS("../../etc/passwd")
    with pytest.raises(UnsafePathError):
        LoadText().execute("/etc/passwd")
    first = SaveText().execute("hello", "sub/report", "md")
    second = SaveText().execute('{"a": 1}', "sub/report", "json")
    files = [first["ui"]["files"][0], second["ui"]["files"][0]]
    assert [f["filename"] for f in files] == ["report_00001_.md", "report_00002_.json"]
    assert files[0]["subfolder"] == "sub"
    assert (isolated_folders / "output" / "sub" / "report_00001_.md").read_text() == "hello"
    assert json.loads((isolated_folders / "output" / "sub" / "report_00002_.json").read_text()) == {"a": 1}
    assert "escapes" in SaveText.VALIDATE_INPUTS("../../x")


def test_lazy_switch_asks_only_for_the_chosen_branch():
    node = ComfySwitchNode()
    assert node.check_lazy_status(True) == ["on_true"]
    assert node.check_lazy_status(False) == ["on_false"]
    assert node.check_lazy_status(True, on_true="x") == []
    assert node.execute(True, on_true="yes") == ("yes",)


def test_preview_any():
    assert PreviewAny().main({"a": [1]}) == {"ui": {"text": ['{\n  "a": [\n    1\n  ]\n}']}}
