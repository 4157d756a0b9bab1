"""The HTTP wide-DAG benchmark run as a user runs it: against a `nodeweaver serve` it starts itself."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from conftest import REPO

from evals.benchmarks.http_wide_dag import expected_sinks, fresh_workflow


def test_fresh_workflows_differ_only_in_first_layer_constants():
    first, second = fresh_workflow(4, 3, random.Random(1)), fresh_workflow(4, 3, random.Random(2))
    assert first.keys() == second.keys()
    changed = {k for k in first if first[k] != second[k]}
    assert changed and changed <= {"0", "1", "2", "3"}  # same shape, new inputs: nothing cached applies


def test_expected_sinks_evaluates_the_graph():
    workflow = {"0": {"class_type": "BenchIntAdd", "inputs": {"a": 2, "b": 3}},
                "1": {"class_type": "BenchIntAdd", "inputs": {"a": 10, "b": 1}},
                "2": {"class_type": "BenchIntAdd", "inputs": {"a": ["0", 0], "b": ["1", 0]}},
                "3": {"class_type": "BenchIntAdd", "inputs": {"a": ["2", 0], "b": ["2", 0]}},
                "sink3": {"class_type": "BenchSink", "inputs": {"value": ["3", 0]}},
                "sink1": {"class_type": "BenchSink", "inputs": {"value": ["1", 0]}}}
    assert expected_sinks(workflow) == {"sink3": 32, "sink1": 11}


def test_nothing_to_measure_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "evals.benchmarks.http_wide_dag"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "nothing to measure" in proc.stderr


def test_an_unreachable_server_is_a_clear_error():
    proc = subprocess.run([sys.executable, "-m", "evals.benchmarks.http_wide_dag",
                           "--nodeweaver", "http://127.0.0.1:9", "--width", "2", "--layers", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("http_wide_dag: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_benchmark_against_a_started_nodeweaver_reports_cold_and_cached_seconds():
    proc = subprocess.run([sys.executable, "-m", "evals.benchmarks.http_wide_dag", "--start-nodeweaver",
                           "--width", "4", "--layers", "4", "--repeat", "2", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["graph"]["nodes"] == len(fresh_workflow(4, 4, random.Random(0)))
    result = doc["servers"]["nodeweaver"]
    assert len(result["cold_runs"]) == len(result["cached_runs"]) == 2
    assert all(s > 0 for s in result["cold_runs"] + result["cached_runs"])
    assert result["cold_s"] > 0 and result["cached_s"] > 0
    assert result["verified_runs"] == 4  # every run's sinks matched the values computed client-side
    assert "ratio" not in doc  # one server: nothing to compare
