"""Hardening: user text cannot freeze the server. Regex nodes run user patterns under a time bound without
holding the GIL; the offline planner reads a request in time linear in its length and refuses over-long ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import REPO, free_port, run_cli

import nodes.core.strings as strings
from agent.offline.compose import plan_offline
from agent.offline.extract import extract
from agent.planner import MAX_REQUEST_CHARS, plan
from compiler import validate
from engine import Executor
from evals.benchmarks.planner import SHAPES, best_time
from runtime.errors import TooLarge

ISSUE_REDOS = ("^(a+)+$", "a" * 40 + "!")  # the pattern and text from the issue
# a pattern the regex engine cannot simplify: exponential on this text without a bound
BACKTRACKING = ("(a|aa)+$", "a" * 100 + "!")


def _regex_workflow(class_type: str, pattern: str | list, text: str, **extra) -> dict:
    inputs = {"string": text, "regex_pattern": pattern, "case_insensitive": True, "multiline": False,
              "dotall": False, **extra}
    return {"r": {"class_type": class_type, "inputs": inputs},
            "p": {"class_type": "PreviewAny", "inputs": {"source": ["r", 0]}}}


def _run(registry, workflow: dict):
    result = validate(workflow, registry)
    assert result.valid, result.errors
    started = time.perf_counter()
    outcome = Executor(registry).execute(result.plan)
    return outcome, time.perf_counter() - started


# ---- 2a: regex nodes --------------------------------------------------------------------------------------
def test_the_issues_redos_pattern_answers_at_once(registry):
    outcome, seconds = _run(registry, _regex_workflow("RegexMatch", *ISSUE_REDOS))
    assert outcome.status == "success" and outcome.outputs["p"] == {"text": ["false"]}
    assert seconds < 5  # liveness: Python's re took minutes here, holding the GIL


@pytest.mark.parametrize("class_type,extra", [("RegexMatch", {}),
                                              ("RegexExtract", {"mode": "All Groups", "group_index": 1}),
                                              ("RegexExtract", {"mode": "First Match", "group_index": 1})])
def test_a_backtracking_pattern_fails_its_node_with_a_clear_error(registry, monkeypatch, class_type, extra):
    monkeypatch.setattr(strings, "REGEX_TIMEOUT_S", 0.2)
    outcome, seconds = _run(registry, _regex_workflow(class_type, *BACKTRACKING, **extra))
    assert outcome.status == "error" and outcome.error["node_id"] == "r"
    assert outcome.error["exception_type"] == "RegexTimeout"
    message = outcome.error["exception_message"]
    assert "took longer than 0.2 s" in message and "backtrack catastrophically" in message
    assert seconds < 5


def test_a_bad_literal_pattern_is_a_validation_error(registry):
    result = validate(_regex_workflow("RegexMatch", "(unclosed", "text"), registry)
    assert not result.valid
    error = result.errors[0]
    assert error.type == "custom_validation_failed" and error.input_name == "regex_pattern"
    assert "invalid regular expression '(unclosed'" in error.details


def test_a_bad_linked_pattern_is_a_clear_execution_error(registry):
    workflow = _regex_workflow("RegexExtract", ["s", 0], "abc", mode="First Match", group_index=1)
    workflow["s"] = {"class_type": "PrimitiveString", "inputs": {"value": "(a"}}
    outcome, _ = _run(registry, workflow)
    assert outcome.status == "error" and outcome.error["exception_type"] == "InvalidRegex"
    assert outcome.error["exception_message"].startswith("invalid regular expression '(a'")


@pytest.mark.parametrize("mode,flags,expected", [
    ("All Matches", {}, "Line one\nline two"),
    ("All Matches", {"case_insensitive": False}, "line two"),
    ("First Group", {"multiline": True}, "one"),
    ("First Group", {}, ""),
    ("First Match", {"dotall": True}, "Line one\nline two"),
])
def test_regex_flags_keep_comfyui_semantics(registry, mode, flags, expected):
    text = "Line one\nline two"
    pattern = {"All Matches": r"line \w+", "First Group": r"^line (\w+)$", "First Match": r"line.*"}[mode]
    workflow = _regex_workflow("RegexExtract", pattern, text, mode=mode, group_index=1)
    workflow["r"]["inputs"].update(flags)
    outcome, _ = _run(registry, workflow)
    assert outcome.status == "success" and outcome.outputs["p"] == {"text": [expected]}


@pytest.mark.slow
def test_a_redos_prompt_leaves_a_real_server_answering(isolated_folders):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nodeweaver.cli", "serve", "--port", str(port)], cwd=REPO,
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            _wait_until_serving(http)
            prompt_id = http.post("/prompt", json={"prompt": _regex_workflow("RegexMatch", *BACKTRACKING)}) \
                .json()["prompt_id"]
            deadline = time.monotonic() + 5
            while not [item for item in http.get("/queue").json()["queue_running"] if item[1] == prompt_id]:
                assert time.monotonic() < deadline, "the prompt never started"
                time.sleep(0.05)
            answered = time.perf_counter()
            assert http.get("/system_stats").json()["devices"]  # while the pattern runs
            assert time.perf_counter() - answered < 5
            item = _wait_for_history(http, prompt_id)
        assert item["status"]["status_str"] == "error"
        error = item["status"]["messages"][0][1]
        assert error["exception_type"] == "RegexTimeout"
        assert f"took longer than {strings.REGEX_TIMEOUT_S:g} s" in error["exception_message"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a server frozen by a pattern holding the GIL ignores SIGTERM
            proc.kill()
            proc.wait(timeout=10)


def _wait_until_serving(http: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http.get("/system_stats").status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.1)
    raise AssertionError("nodeweaver serve did not start within 60 s")


def _wait_for_history(http: httpx.Client, prompt_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        history = http.get(f"/history/{prompt_id}").json()
        if history:
            return history[prompt_id]
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} did not end within 30 s")


# ---- 2b: the planner ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", list(SHAPES))
def test_reading_a_request_takes_time_linear_in_its_length(shape):
    make = SHAPES[shape]
    quarter = best_time(make(16_000), repeat=2)
    assert quarter < 5, f"{shape}: {quarter:.1f} s for 16,000 characters (it was quadratic)"
    full = best_time(make(64_000), repeat=3)
    assert full / quarter < 8, f"{shape}: 16k chars {quarter * 1000:.0f} ms, 64k chars {full * 1000:.0f} ms"


def test_a_ten_megabyte_request_is_refused_at_once():
    started = time.perf_counter()
    with pytest.raises(TooLarge) as refused:
        plan("draw a cat " * 1_000_000)
    assert time.perf_counter() - started < 1
    error = refused.value
    assert error.kind == "request_too_large" and error.status == 413
    assert error.details == {"length": 11_000_000, "limit": MAX_REQUEST_CHARS}
    assert "11,000,000 characters" in str(error) and "at most 20,000" in str(error)


def test_the_size_bound_is_a_parameter_and_inclusive():
    request = "a red fox in the snow, 768x512 "
    assert plan(request, max_request_chars=len(request)).status in ("valid", "question")
    with pytest.raises(TooLarge):
        plan(request, max_request_chars=len(request) - 1)


def test_numbers_too_long_to_mean_anything_are_not_read():
    """int() of a 6,000-digit run raised ValueError (and one under 4,300 digits is slow to convert)."""
    request = "draw " + "9" * 6000 + "张 cats, " + "7" * 5000 + " steps, seed " + "1" * 30 + " and 5"
    facts = extract(request, checkpoints=[], loras=[], inputs=[])
    assert facts.batch is None and facts.steps is None and facts.seeds == [5]
    assert plan_offline(request, checkpoints=["v1-5.safetensors"], loras=[], inputs=[]).workflow


def test_template_values_read_each_placeholder_once_in_one_pass():
    from agent.offline.slots import template_values

    assert template_values("name is Bo, AGE=3, 名字是小明, 城市为北京", "{name} {age} {名字} {城市} {missing} {name}") == \
        "name=Bo\nage=3\n名字=小明\n城市=北京\nmissing=missing"


@pytest.mark.slow
def test_the_cli_refuses_an_over_long_request_clearly():
    from nodeweaver.cli import EXIT_UNREADABLE

    started = time.perf_counter()
    done = run_cli("plan", "a fox " * 5000)
    assert done.returncode == EXIT_UNREADABLE
    assert "30,000 characters long; the planner accepts at most 20,000" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.perf_counter() - started < 60
