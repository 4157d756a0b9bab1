"""The everyday commands start fast because they never import the heavy libraries.

`nodeweaver plan` offline took 1.4 s, nearly all of it LangChain imported to learn that no LLM provider was
configured. These tests run the real commands in a fresh interpreter and fail as soon as one of the heavy
libraries (torch, diffusers, LangChain/LangGraph, the servers' stacks) is loaded again on a path that does not
use it. They check which modules load, not how long it takes, so a busy machine cannot make them flaky.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

import agent
from nodeweaver.cli import main

# Libraries a plain plan / validate / node lookup must not load: each costs from 0.1 s to several seconds.
HEAVY = ("torch", "diffusers", "transformers", "safetensors", "langchain_core", "langgraph", "langsmith",
         "langchain_openai", "openai", "fastapi", "uvicorn", "starlette", "mcp", "numpy", "PIL", "requests")

# Runs one command in-process in a fresh interpreter and reports its exit code, its stdout and what it loaded.
PROBE = """
import contextlib, io, json, sys
from nodeweaver.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    rc = main(json.loads(sys.argv[1]))
heavy = json.loads(sys.argv[2])
print(json.dumps({"rc": rc, "stdout": out.getvalue(), "loaded": sorted(m for m in heavy if m in sys.modules)}))
"""


def probe(*argv: str) -> dict:
    """Run `nodeweaver ARGV...` in a new interpreter (offline: no provider in its environment)."""
    env = {k: v for k, v in os.environ.items() if k != "NODEWEAVER_PLANNER_PROVIDER"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(argv)), json.dumps(HEAVY)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout.splitlines()[-1]), "stderr": proc.stderr}


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint", ["v1-5-pruned-emaonly.safetensors", "tiny-sd15-random.safetensors"],
                         ids=["own-checkpoint", "demo-checkpoint-already-written"])
def test_offline_plan_loads_no_heavy_library(isolated_folders, checkpoint):
    """Planning only names model files, so it reads none. (The very first plan on a machine with no checkpoint
    at all writes the demo checkpoint, which does need torch: that one-off run is outside this check.)"""
    (isolated_folders / "models" / "checkpoints").mkdir(parents=True)
    (isolated_folders / "models" / "checkpoints" / checkpoint).write_bytes(b"")
    found = probe("plan", "a red fox in the snow, 768x512", "--json")
    assert found["rc"] == 0, found["stderr"]
    result = json.loads(found["stdout"])
    assert result["status"] == "valid" and result["planner"] == "offline"
    loaders = [n["inputs"] for n in result["workflow"].values() if n["class_type"] == "CheckpointLoaderSimple"]
    assert [inputs["ckpt_name"] for inputs in loaders] == [checkpoint]
    assert any(n["class_type"] == "KSampler" for n in result["workflow"].values())
    assert found["loaded"] == []


@pytest.mark.slow
def test_validate_and_node_lookup_load_no_heavy_library(isolated_folders, tmp_path):
    (isolated_folders / "models" / "checkpoints").mkdir(parents=True)
    (isolated_folders / "models" / "checkpoints" / "v1-5-pruned-emaonly.safetensors").write_bytes(b"")
    planned = probe("plan", "a watercolor lighthouse at dusk", "--json")
    workflow = tmp_path / "lighthouse.json"
    workflow.write_text(json.dumps(json.loads(planned["stdout"])["workflow"]), encoding="utf-8")

    checked = probe("validate", str(workflow))
    assert checked["rc"] == 0, checked["stderr"]
    assert checked["stdout"].startswith("OK")
    assert checked["loaded"] == []

    looked_up = probe("node", "KSampler")
    assert looked_up["rc"] == 0, looked_up["stderr"]
    assert "KSampler" in looked_up["stdout"]
    assert looked_up["loaded"] == []


def test_configured_provider_reads_the_environment(monkeypatch):
    monkeypatch.delenv("NODEWEAVER_PLANNER_PROVIDER", raising=False)
    assert agent.configured_provider() is None
    monkeypatch.setenv("NODEWEAVER_PLANNER_PROVIDER", "")
    assert agent.configured_provider() is None
    monkeypatch.setenv("NODEWEAVER_PLANNER_PROVIDER", "dashscope")
    assert agent.configured_provider() == "dashscope"


def test_plan_still_routes_to_the_configured_llm_provider(monkeypatch, capsys):
    """Deferring the LLM imports must not lose the environment's provider: it is tried, and named."""
    monkeypatch.setenv("NODEWEAVER_PLANNER_PROVIDER", "no-such-provider")
    rc = main(["plan", "a red fox in the snow", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert rc != 0
    assert result["planner"] == "llm:no-such-provider"
    assert result["errors"][0]["type"] == "provider_config"
    assert "no-such-provider" in result["errors"][0]["message"]
