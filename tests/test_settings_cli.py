"""The one settings object, and the CLI as a user meets it: flags over environment over config file, clear errors
for bad settings, `plan --run` with progress and history, readable history rows."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from runtime.settings import ConfigError, load_settings


def test_flags_beat_environment_beat_config_file(isolated_folders, monkeypatch):
    config = isolated_folders / "config.toml"
    config.write_text('[folders]\nmodels_dir = "/from/file"\ninput_dir = "/file/input"\n'
                      '[engine]\nnode_timeout = 7.5\n[server]\nmax_plan_chars = 500\n', encoding="utf-8")
    monkeypatch.setenv("NODEWEAVER_CONFIG", str(config))
    monkeypatch.delenv("NODEWEAVER_MODELS_DIR")
    monkeypatch.delenv("NODEWEAVER_INPUT_DIR")
    from_file = load_settings()
    assert str(from_file.models_dir) == "/from/file" and from_file.engine.node_timeout == 7.5
    assert from_file.server.max_plan_chars == 500 and from_file.server.max_json_depth == 256
    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", "/from/env")
    monkeypatch.setenv("NODEWEAVER_ENGINE__NODE_TIMEOUT", "3")
    from_env = load_settings()
    assert str(from_env.models_dir) == "/from/env" and from_env.engine.node_timeout == 3
    assert str(from_env.input_dir) == "/file/input"  # what the environment does not set still comes from the file
    from_flags = load_settings({"models_dir": "/from/flag", "engine": {"node_timeout": 1}})
    assert str(from_flags.models_dir) == "/from/flag" and from_flags.engine.node_timeout == 1
    assert from_flags.server.max_plan_chars == 500  # a nested flag does not wipe its section's other keys


def test_custom_nodes_from_the_environment_are_a_path_list(monkeypatch, tmp_path):
    monkeypatch.setenv("NODEWEAVER_CUSTOM_NODES", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert load_settings().custom_nodes == [tmp_path / "a", tmp_path / "b"]


def test_bad_settings_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("NODEWEAVER_ENGINE__NODE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="engine.node_timeout"):
        load_settings()


@pytest.mark.slow
def test_cli_reports_bad_settings_and_config_files_without_a_traceback(isolated_folders):
    proc = run_cli("nodes", "save", env={"NODEWEAVER_ENGINE__NODE_TIMEOUT": "-1"})
    assert proc.returncode == 2 and "node_timeout" in proc.stderr and "Traceback" not in proc.stderr
    broken = isolated_folders / "broken.toml"
    broken.write_text("[folders\n", encoding="utf-8")
    proc = run_cli("nodes", "save", env={"NODEWEAVER_CONFIG": str(broken)})
    assert proc.returncode == 2 and "cannot read config file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_folder_flags_reach_every_part(isolated_folders, tmp_path):
    """--input-dir is honoured by the nodes that read files, without being written into the environment."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "note.txt").write_text("hello from elsewhere", encoding="utf-8")
    workflow = {"1": {"class_type": "LoadText", "inputs": {"path": "note.txt"}},
                "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow), encoding="utf-8")
    proc = run_cli("run", str(path), "--input-dir", str(other), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "hello from elsewhere" in json.dumps(json.loads(proc.stdout)["outputs"])


@pytest.mark.slow
def test_plan_run_shows_progress_and_lands_in_history(isolated_folders):
    proc = run_cli("plan", "a 64x64 picture of a red fox in the snow, 2 steps", "--run")
    assert proc.returncode == 0, proc.stderr
    assert "running job" in proc.stderr and "KSampler" in proc.stderr and "2/2" in proc.stderr  # sampler steps
    history = run_cli("history")
    assert history.returncode == 0, history.stderr
    first, shape = history.stdout.splitlines()[:2]
    assert "success" in first and "7 nodes" in first
    assert "KSampler" in shape and "SaveImage" in shape
    assert str(isolated_folders / "output") in history.stdout  # the picture it made, with its full path
    rows = json.loads(run_cli("history", "--json").stdout)
    assert len(rows) == 1 and rows[0]["status"] == "success"


@pytest.mark.slow
def test_cli_prints_workflows_with_lone_surrogates(tmp_path):
    """Ids and texts that UTF-8 cannot carry are printed escaped, never an internal error."""
    path = tmp_path / "odd.json"
    path.write_text('{"\\ud800": {"class_type": "PreviewAny", "inputs": {"source": "x\\udfff"}}}', encoding="utf-8")
    for args in (("run", str(path)), ("run", str(path), "--json"), ("validate", str(path), "--json"),
                 ("history",)):
        proc = run_cli(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "internal error" not in proc.stderr
    assert json.loads(run_cli("validate", str(path), "--json").stdout)["outputs"] == ["\ud800"]
