"""The `nodeweaver` command as users run it."""

from __future__ import annotations

import json

import pytest
from conftest import CATALOG, DATA, run_cli

GOOD = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "hi"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


@pytest.mark.slow
def test_validate_exit_codes_and_json(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(GOOD))
    proc = run_cli("validate", str(good))
    assert proc.returncode == 0 and proc.stdout.startswith("OK")

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"1": {"class_type": "PrimitiveInt", "inputs": {"value": "x"}},
                               "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}))
    proc = run_cli("validate", str(bad))
    assert proc.returncode == 1
    assert "node 1 (PrimitiveInt), input 'value'" in proc.stdout and "invalid_input_type" in proc.stdout
    proc = run_cli("validate", str(bad), "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["valid"] is False
    assert data["errors"][0]["type"] == "invalid_input_type" and data["errors"][0]["node_id"] == "1"
    assert data["node_errors"]["1"]["class_type"] == "PrimitiveInt"

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    proc = run_cli("validate", str(garbage), "--json")
    assert proc.returncode == 2 and json.loads(proc.stdout)["errors"][0]["type"] == "invalid_workflow_format"
    proc = run_cli("validate", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("validate", "-", stdin="x = = 1")
    assert proc.returncode == 2 and "text_form_syntax" in proc.stderr


@pytest.mark.slow
def test_convert_between_forms(tmp_path):
    src = tmp_path / "wf.json"
    src.write_text(json.dumps(GOOD))
    text = run_cli("convert", str(src), "--to", "text")
    assert text.returncode == 0
    assert text.stdout == 'n1 = PrimitiveString(value="hi")\nn2 = PreviewAny(source=n1.STRING)\n'
    back = run_cli("convert", "-", "--to", "api", stdin=text.stdout)
    assert json.loads(back.stdout) == GOOD
    proc = run_cli("validate", "-", stdin=text.stdout)
    assert proc.returncode == 0 and "(text format)" in proc.stdout


@pytest.mark.slow
def test_nodes_search_schema_and_object_info():
    proc = run_cli("nodes", "regex")
    assert proc.returncode == 0 and "RegexExtract" in proc.stdout
    proc = run_cli("nodes", "保存", "文本", "--json")
    assert json.loads(proc.stdout)["results"][0]["name"] == "SaveText"
    proc = run_cli("node", "TextTemplate")
    assert proc.returncode == 0 and "template: STRING" in proc.stdout
    proc = run_cli("node", "TextTemplat")
    assert proc.returncode == 1 and "did you mean TextTemplate" in proc.stderr
    proc = run_cli("nodes", "--object-info", "--custom-nodes", str(DATA / "custom_nodes"))
    info = json.loads(proc.stdout)
    assert info["Example"]["display_name"] == "Example Node"
    assert info["PrimitiveInt"]["input"]["required"]["value"][0] == "INT"


@pytest.mark.slow
def test_validate_ui_workflow_against_imported_catalog(tmp_path):
    ui = {"nodes": [{"id": 1, "type": "EmptyLatentImage", "mode": 0, "inputs": [], "outputs": [],
                     "widgets_values": [512, 512, 1]},
                    {"id": 2, "type": "PreviewAny", "mode": 0, "inputs": [{"name": "source", "type": "*", "link": 1}],
                     "outputs": [], "widgets_values": []}],
          "links": [[1, 1, 0, 2, 0, "LATENT"]]}
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    if not CATALOG.is_file():
        pytest.skip(f"the shared ComfyUI catalog is not at {CATALOG}")
    proc = run_cli("validate", str(path), "--catalog", str(CATALOG), "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["format"] == "ui" and data["valid"] is True
    assert data["plan"]["order"] == ["1", "2"]


@pytest.mark.slow
def test_bad_catalog_and_result_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    for args in (("nodes", "--catalog", str(tmp_path / "missing.json")), ("nodes", "--catalog", str(broken)),
                 ("eval-compare", str(broken), str(broken))):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        assert proc.stderr.startswith(("cannot import catalog", "cannot compare"))
