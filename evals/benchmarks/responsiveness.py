"""Benchmark: does a real `nodeweaver serve` keep answering while hostile requests are in flight?

Starts the server as a user does, then, for each load below, sends it in a background thread and polls
`/system_stats` every 50 ms until the load's reply arrives (or the job it queued has ended). Reports the
load's own time and the slowest and median `/system_stats` answer meanwhile. Goal: the slowest under 1 s.

Loads: a catastrophically backtracking RegexMatch (the job runs until its time bound), a 10 MB planning
request, a 100,000-node invalid workflow to validate, a 10,000-node workflow to queue, a node that never
returns (with --node-timeout 3) followed by an ordinary job.

Run: python -m evals.benchmarks.responsiveness
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HANG_PACK = REPO / "tests" / "data" / "test_nodes" / "hang_nodes.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_job(http: httpx.Client, prompt_id: str, limit: float = 60) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        item = http.get(f"/history/{prompt_id}").json().get(prompt_id)
        if item:
            return item["status"]["status_str"]
        time.sleep(0.05)
    return "still running"


def _loads(http: httpx.Client) -> dict[str, Callable[[], str]]:
    redos = {"1": {"class_type": "RegexMatch", "inputs": {"string": "a" * 100 + "!", "regex_pattern": "(a|aa)+$",
                                                          "case_insensitive": False, "multiline": False,
                                                          "dotall": False}},
             "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    invalid = {str(i): {"class_type": "PreviewAny", "inputs": {"source": ["missing", 0]}} for i in range(100_000)}
    chain = {"0": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}
    chain.update({str(i): {"class_type": "StringConcatenate",
                           "inputs": {"string_a": [str(i - 1), 0], "string_b": "y", "delimiter": ""}}
                  for i in range(1, 10_000)})
    chain["end"] = {"class_type": "PreviewAny", "inputs": {"source": ["9999", 0]}}
    hang = {"1": {"class_type": "HangForever", "inputs": {"value": 1}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}

    def job(workflow: dict) -> Callable[[], str]:
        def send() -> str:
            answer = http.post("/prompt", json={"prompt": workflow}, timeout=120)
            if answer.status_code != 200:
                return f"HTTP {answer.status_code}"
            return _wait_for_job(http, answer.json()["prompt_id"])
        return send

    def hang_then_normal() -> str:
        first = job(hang)()
        second = job({"1": {"class_type": "PrimitiveString", "inputs": {"value": "after"}},
                      "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}})()
        return f"hung node: {first}; next job: {second}"

    return {
        "ReDoS RegexMatch job": job(redos),
        "10 MB /api/plan request": lambda: f"HTTP {http.post('/api/plan', json={'request': '7' * 10_000_000}, timeout=120).status_code}",
        "100,000-node invalid /api/validate": lambda: f"HTTP {http.post('/api/validate', json={'workflow': invalid}, timeout=300).status_code}",
        "10,000-node chain through /prompt": job(chain),
        "node that never returns, then a job": hang_then_normal,
    }


def _measure(http: httpx.Client, load: Callable[[], str]) -> tuple[str, float, list[float]]:
    outcome: list[str] = []
    started = time.perf_counter()
    worker = threading.Thread(target=lambda: outcome.append(load()), daemon=True)
    worker.start()
    latencies = []
    while worker.is_alive():
        asked = time.perf_counter()
        http.get("/system_stats", timeout=60)
        latencies.append(time.perf_counter() - asked)
        time.sleep(0.05)
    return (outcome or ["no answer"])[0], time.perf_counter() - started, latencies


def main() -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "NODEWEAVER_DATA_DIR": data, "NODEWEAVER_CUSTOM_NODES": str(HANG_PACK)}
        server = subprocess.Popen([sys.executable, "-m", "nodeweaver.cli", "serve", "--port", str(port),
                                   "--node-timeout", "3"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        http.get("/system_stats", timeout=5)  # also imports torch once, before measuring
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                print(f"{'load':<38} {'outcome':<42} {'load s':>7} {'stats max':>10} {'median':>8} {'polls':>6}")
                for name, load in _loads(http).items():
                    outcome, seconds, latencies = _measure(http, load)
                    print(f"{name:<38} {outcome[:42]:<42} {seconds:7.2f} {max(latencies or [0]):9.3f}s "
                          f"{statistics.median(latencies or [0]):7.3f}s {len(latencies):6d}")
                print(json.dumps({"system_stats": "answering" if http.get("/system_stats").status_code == 200
                                  else "not answering"}))
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
