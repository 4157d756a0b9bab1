"""Engine hardening: hung nodes never wedge the queue, job numbers are unique, any string can be stored,
and the output cache keeps to a byte budget."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import REPO

from compiler import validate
from engine import Executor
from engine.cache import OutputCache, default_budget, estimate_size
from engine.jobs import JobQueue


@pytest.fixture
def hang(reg):
    """The hang_nodes module as loaded; every hung node is released when the test ends."""
    module = sys.modules[reg.get_class("HangForever").__module__]
    module.RELEASE.clear()
    yield module
    module.RELEASE.set()


def one(class_type: str, value: int = 1) -> dict:
    return {"n": {"class_type": class_type, "inputs": {"value": value}},
            "o": {"class_type": "ShowInt", "inputs": {"value": ["n", 0]}}}


def plan_of(reg, wf):
    result = validate(wf, reg)
    assert result.valid, result.errors
    return result.plan


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# ---- hung nodes ------------------------------------------------------------------------------------------
def test_node_that_never_returns_times_out_and_the_next_job_runs(reg, hang, tmp_path):
    queue = JobQueue(reg, tmp_path / "jobs.db", node_timeout=0.3)
    queue.start()
    try:
        stuck = queue.wait(queue.submit(one("HangForever")).id, timeout=5)
        assert stuck.status == "error" and stuck.error["exception_type"] == "NodeTimeout"
        assert stuck.error["node_id"] == "n" and "0.3 s" in stuck.error["exception_message"]
        # the shared third-party lock went back with the abandoned node
        assert not queue.executor._legacy_lock.locked()
        after = queue.wait(queue.submit(one("LegacyEcho", 7)).id, timeout=5)
        assert after.status == "success" and after.outputs == {"o": {"value": [7]}}
        assert queue.executor.stats()["abandoned"] == 1
    finally:
        queue.close()


def test_interrupt_ends_a_job_stuck_in_a_node_that_never_checks(reg, hang, tmp_path):
    executor = Executor(reg, interrupt_grace=0.3)
    queue = JobQueue(reg, tmp_path / "jobs.db", executor=executor)
    queue.start()
    try:
        job = queue.submit(one("HangForever"))
        assert wait_until(lambda: queue.get(job.id).status == "running")
        time.sleep(0.1)  # inside the node
        asked = time.monotonic()
        assert queue.cancel(job.id) is True
        done = queue.wait(job.id, timeout=5)
        took = time.monotonic() - asked
        assert done.status == "interrupted" and done.error["node_id"] == "n"
        assert took < 5
        welcome = json.loads((REPO / "examples" / "welcome_text.json").read_text(encoding="utf-8"))
        nxt = queue.wait(queue.submit(welcome).id, timeout=5)
        assert nxt.status == "success"
        assert not executor._legacy_lock.locked()
    finally:
        queue.close()


def test_many_timeouts_exhaust_nothing(reg, hang, tmp_path):
    executor = Executor(reg, max_workers=2, node_timeout=0.05)
    for _ in range(12):
        result = executor.execute(plan_of(reg, one("HangForever")))
        assert result.status == "error" and result.error["exception_type"] == "NodeTimeout"
    stats = executor.stats()
    assert stats["abandoned"] == 12 and stats["abandoned_running"] == 12  # blocked in C: still there
    normal = executor.execute(plan_of(reg, one("LegacyEcho", 3)))
    assert normal.status == "success" and normal.outputs == {"o": {"value": [3]}}
    welcome = json.loads((REPO / "examples" / "welcome_text.json").read_text(encoding="utf-8"))
    assert executor.execute(plan_of(reg, welcome)).status == "success"
    hang.RELEASE.set()
    assert wait_until(lambda: executor.stats()["abandoned_running"] == 0)


def test_abandoned_python_loop_is_stopped(reg, hang):
    executor = Executor(reg, node_timeout=0.2)
    result = executor.execute(plan_of(reg, one("HangLoop")))
    assert result.status == "error" and result.error["exception_type"] == "NodeTimeout"
    # the thread got NodeAbandoned at its next bytecode and left the loop, though RELEASE is never set
    assert wait_until(lambda: hang.LOOPING["count"] == 0 and executor.stats()["abandoned_running"] == 0)
    assert not hang.RELEASE.is_set()


def test_the_smaller_of_class_and_server_timeouts_wins(reg, hang):
    by_class = Executor(reg, node_timeout=30).execute(plan_of(reg, one("HangWithTimeout")))
    assert by_class.error["exception_type"] == "NodeTimeout" and "0.3 s" in by_class.error["exception_message"]
    by_server = Executor(reg, node_timeout=0.1).execute(plan_of(reg, one("HangWithTimeout")))
    assert "0.1 s" in by_server.error["exception_message"]


def test_a_parallel_branch_waits_for_the_lock_and_runs_after_the_timeout(reg, hang):
    wf = {"h": {"class_type": "HangWithTimeout", "inputs": {"value": 1}},
          "e": {"class_type": "LegacyEcho", "inputs": {"value": 2}},
          "oh": {"class_type": "ShowInt", "inputs": {"value": ["h", 0]}},
          "oe": {"class_type": "ShowInt", "inputs": {"value": ["e", 0]}}}
    executor = Executor(reg)
    result = executor.execute(plan_of(reg, wf))
    assert result.status == "error" and result.error["node_id"] == "h"
    assert not executor._legacy_lock.locked()
    rerun = executor.execute(plan_of(reg, {k: wf[k] for k in ("e", "oe")}))
    assert rerun.status == "success" and rerun.outputs == {"oe": {"value": [2]}}


# ---- job numbers -----------------------------------------------------------------------------------------
def test_a_thousand_concurrent_submissions_get_distinct_numbers(reg, tmp_path):
    queue = JobQueue(reg, tmp_path / "jobs.db")
    wf = one("LegacyEcho")
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            jobs = list(pool.map(lambda _: queue.submit(wf), range(1000)))
        numbers = [j.number for j in jobs]
        assert len(set(numbers)) == 1000
        assert sorted(j.number for j in queue.pending()) == sorted(numbers)
    finally:
        queue.close()


def test_an_old_history_with_duplicate_numbers_opens_and_keeps_its_order(reg, tmp_path):
    db = tmp_path / "jobs.db"
    JobQueue(reg, db).close()
    raw = sqlite3.connect(db)
    raw.execute("DROP INDEX jobs_number")  # as an old database was made
    for i, (job_id, number) in enumerate([("a", 0), ("b", 1), ("c", 1), ("d", 1), ("e", 2)]):
        raw.execute("INSERT INTO jobs (id, number, status, prompt, plan, created_at) VALUES "
                    "(?, ?, 'queued', '{}', '{\"prompt\": {}, \"order\": [], \"outputs\": []}', ?)",
                    (job_id, number, 100.0 + i))
    raw.commit()
    raw.close()
    queue = JobQueue(reg, db)
    try:
        pending = queue.pending()
        assert [j.id for j in pending] == ["a", "b", "c", "d", "e"]
        assert len({j.number for j in pending}) == 5
        new = queue.submit(one("LegacyEcho"))
        assert new.number > max(j.number for j in pending)
    finally:
        queue.close()


# ---- any string --------------------------------------------------------------------------------------
def test_lone_surrogates_are_stored_losslessly(reg, tmp_path):
    queue = JobQueue(reg, tmp_path / "jobs.db")
    odd = "a\ud800b\udfff 你好"
    wf = {"s": {"class_type": "PrimitiveString", "inputs": {"value": odd}},
          "o": {"class_type": "PreviewAny", "inputs": {"source": ["s", 0]}}}
    try:
        job = queue.submit(wf, extra_data={"note": odd, odd: [odd]}, client_id=odd)
        stored = queue.get(job.id)
        assert stored.prompt["s"]["inputs"]["value"] == odd
        assert stored.extra_data == {"note": odd, odd: [odd]}
        assert stored.client_id is not None
        done = queue.run_next()
        assert done.status == "success"
    finally:
        queue.close()


def test_post_prompt_with_lone_surrogates_is_accepted(reg, isolated_folders):
    from fastapi.testclient import TestClient

    from mcp_server.http_app import create_app
    from mcp_server.service import NodeWeaverService
    from runtime.settings import load_settings

    service = NodeWeaverService(reg, settings=load_settings({}), start_worker=False)
    body = json.dumps({"prompt": {"s": {"class_type": "PrimitiveString", "inputs": {"value": "x\ud800"}},
                                  "o": {"class_type": "PreviewAny", "inputs": {"source": ["s", 0]}}},
                       "extra_data": {"k": "\udc00"}})  # ensure_ascii: the surrogates travel as \\u escapes
    try:
        with TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1") as client:
            response = client.post("/prompt", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        job = service.queue.get(response.json()["prompt_id"])
        assert job.prompt["s"]["inputs"]["value"] == "x\ud800" and job.extra_data == {"k": "\udc00"}
    finally:
        service.close()


# ---- output cache budget -----------------------------------------------------------------------------------
def test_output_cache_keeps_to_its_byte_budget_lru():
    mib = 1024 * 1024
    cache = OutputCache(max_bytes=int(3.5 * mib))
    for i in range(3):
        cache.put(i, [[np.zeros(mib, dtype=np.uint8)]], None)
    assert cache.get(0) is not None  # 0 is now the most recently used
    cache.put(3, [[np.zeros(mib, dtype=np.uint8)]], None)
    assert cache.bytes <= 3.5 * mib and len(cache) == 3
    assert cache.get(1) is None and cache.get(0) is not None and cache.get(3) is not None
    cache.put("big", [[np.zeros(4 * mib, dtype=np.uint8)]], None)  # over the whole budget: not kept
    assert cache.get("big") is None and len(cache) == 3


def test_sizes_are_estimated_from_buffers_and_containers():
    array = np.zeros((100, 100), dtype=np.float64)
    assert estimate_size(array) == 80_000
    nested = {"a": [array, (array, "x" * 1000)], "b": [[array]]}
    assert 241_000 <= estimate_size(nested) < 242_000
    many = [np.zeros(100, dtype=np.uint8)] * 5000  # longer than the sample: scaled, not cut off
    assert estimate_size(many) >= 500_000


@pytest.mark.slow
def test_tensor_sizes_are_numel_times_element_size():
    torch = pytest.importorskip("torch")
    tensor = torch.zeros(1000, 10, dtype=torch.float16)
    assert estimate_size(tensor) == 20_000
    assert 40_000 <= estimate_size([tensor, (tensor,)]) < 41_000


def test_default_budget_follows_the_machine():
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        available = next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    budget = OutputCache().max_bytes
    assert budget == default_budget()
    assert 0.2 * available < budget < 0.3 * available
    assert OutputCache(memory_fraction=0.5).max_bytes > budget

