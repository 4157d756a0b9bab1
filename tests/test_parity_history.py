"""ComfyUI's /history lists this server run's jobs (ComfyUI keeps history in memory); NodeWeaver's persisted
history stays reachable (?all=true, [server] history_scope = "all", `nodeweaver history`). A restart is a
new service and app over the same data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest
from conftest import REPO, free_port, run_cli
from fastapi.testclient import TestClient

from mcp_server.http_app import create_app
from mcp_server.service import NodeWeaverService
from runtime.settings import load_settings


def show(value: int) -> dict:
    return {"w": {"class_type": "Wait", "inputs": {"seconds": 0.0, "value": value}},
            "o": {"class_type": "ShowInt", "inputs": {"value": ["w", 0]}}}


def start(reg, data_dir, *, worker: bool = True, scope: str = "run") -> NodeWeaverService:
    settings = load_settings({"data_dir": data_dir, "server": {"history_scope": scope}})
    return NodeWeaverService(reg, start_worker=worker, settings=settings)


def http(service: NodeWeaverService) -> TestClient:
    return TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1")


def run_one(service: NodeWeaverService, value: int) -> str:
    job = service.submit(show(value))
    assert service.queue.wait(job.id, timeout=30).status == "success"
    return job.id


def test_history_holds_this_runs_jobs_and_the_rest_stays_reachable(reg, tmp_path):
    first = start(reg, tmp_path)
    before = run_one(first, 1)
    first.close()
    second = start(reg, tmp_path)
    try:
        now = run_one(second, 2)
        with http(second) as client:
            assert list(client.get("/history").json()) == [now]
            assert client.get("/history", params={"offset": 1}).json() == {}  # ComfyUI's paging, this run only
            assert client.get(f"/history/{before}").json() == {}
            assert list(client.get(f"/history/{now}").json()) == [now]
            assert list(client.get("/history", params={"all": "true"}).json()) == [before, now]
            assert list(client.get(f"/history/{before}", params={"all": "true"}).json()) == [before]
            refused = client.get("/history", params={"all": "maybe"})
            assert refused.status_code == 400 and "all must be true or false" in refused.text
    finally:
        second.close()


def test_history_scope_all_serves_the_persisted_history(reg, tmp_path):
    first = start(reg, tmp_path)
    before = run_one(first, 1)
    first.close()
    second = start(reg, tmp_path, scope="all")
    try:
        now = run_one(second, 2)
        with http(second) as client:
            assert list(client.get("/history").json()) == [before, now]
            assert list(client.get(f"/history/{before}").json()) == [before]
    finally:
        second.close()


def test_a_job_queued_before_a_restart_belongs_to_the_run_that_runs_it(reg, tmp_path):
    first = start(reg, tmp_path, worker=False)
    queued = first.submit(show(7)).id
    first.close()
    second = start(reg, tmp_path)
    try:
        assert second.queue.wait(queued, timeout=30).status == "success"
        with http(second) as client:
            item = client.get("/history").json()[queued]
            assert item["status"]["completed"] is True and item["outputs"]["o"]
    finally:
        second.close()


def test_clearing_the_history_forgets_this_runs_jobs_only(reg, tmp_path):
    first = start(reg, tmp_path)
    before = run_one(first, 1)
    first.close()
    second = start(reg, tmp_path)
    try:
        run_one(second, 2)
        with http(second) as client:
            assert client.post("/history", json={"clear": True}).status_code == 200
            assert client.get("/history").json() == {}
            assert list(client.get("/history", params={"all": "1"}).json()) == [before]
            client.post("/history", params={"all": "true"}, json={"clear": True})
            assert client.get("/history", params={"all": "1"}).json() == {}
    finally:
        second.close()


def test_nodeweaver_history_shows_every_run(reg, tmp_path):
    for value in (1, 2):  # two runs
        service = start(reg, tmp_path)
        run_one(service, value)
        service.close()
    result = run_cli("history", "--json", env={"NODEWEAVER_DATA_DIR": str(tmp_path),
                                                "NODEWEAVER_CUSTOM_NODES": str(REPO / "tests/data/test_nodes")})
    assert result.returncode == 0, result.stderr
    jobs = json.loads(result.stdout)
    assert len(jobs) == 2 and len({j["run_id"] for j in jobs}) == 2


@pytest.mark.slow
def test_serve_history_scope_flag(reg, tmp_path):
    earlier = start(reg, tmp_path)
    before = run_one(earlier, 1)
    earlier.close()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "nodeweaver.cli", "serve", "--port", str(port),
                               "--history-scope", "all", "--custom-nodes", str(REPO / "tests/data/test_nodes")],
                              cwd=REPO, env={**os.environ, "NODEWEAVER_DATA_DIR": str(tmp_path)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                listed = httpx.get(f"http://127.0.0.1:{port}/history", timeout=5).json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        assert list(listed) == [before]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert run_cli("serve", "--history-scope", "sometimes").returncode != 0
