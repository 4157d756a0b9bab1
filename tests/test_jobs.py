"""Jobs: priorities, cancel, interrupt, history in SQLite, and a queue that survives kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import DATA, REPO, run_cli

from engine.jobs import JobNotFound, JobQueue, WorkflowInvalid


def show(value: int, wait: float = 0.0) -> dict:
    return {"w": {"class_type": "Wait", "inputs": {"seconds": wait, "value": value}},
            "o": {"class_type": "ShowInt", "inputs": {"value": ["w", 0]}}}


def test_jobs_run_in_priority_order_and_keep_history(reg, tmp_path):
    queue = JobQueue(reg, tmp_path / "jobs.db")
    low = queue.submit(show(1))
    high = queue.submit(show(2), priority=5)
    cancelled = queue.submit(show(3))
    assert queue.cancel(cancelled.id) is True
    assert [j.id for j in queue.pending()] == [high.id, low.id]
    first = queue.run_next()
    second = queue.run_next()
    assert (first.id, second.id) == (high.id, low.id)
    assert queue.run_next() is None
    assert second.status == "success" and second.outputs == {"o": {"value": [1]}}
    assert set(second.timings) == {"w", "o"}
    assert {j.id: j.status for j in queue.history()} == {
        high.id: "success", low.id: "success", cancelled.id: "cancelled"}
    queue.close()
    reopened = JobQueue(reg, tmp_path / "jobs.db")
    assert reopened.get(low.id).outputs == {"o": {"value": [1]}}
    with pytest.raises(JobNotFound):
        reopened.get("nope")
    reopened.close()


def test_invalid_workflows_are_refused_with_errors(reg, tmp_path):
    queue = JobQueue(reg, tmp_path / "jobs.db")
    with pytest.raises(WorkflowInvalid) as info:
        queue.submit({"o": {"class_type": "ShowInt", "inputs": {"value": "x"}}})
    assert info.value.result.errors[0].type == "invalid_input_type"
    assert queue.pending() == []
    queue.close()


def test_worker_thread_and_interrupt_of_running_job(reg, tmp_path):
    queue = JobQueue(reg, tmp_path / "jobs.db")
    queue.start()
    slow = {"s": {"class_type": "Steps", "inputs": {"steps": 100, "delay": 0.05}},
            "o": {"class_type": "ShowInt", "inputs": {"value": ["s", 0]}}}
    job = queue.submit(slow)
    deadline = time.monotonic() + 10
    while queue.get(job.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert queue.cancel(job.id) is True  # running: interrupted
    done = queue.wait(job.id, timeout=10)
    assert done.status == "interrupted"
    quick = queue.submit(show(7))
    assert queue.wait(quick.id, timeout=10).outputs == {"o": {"value": [7]}}
    queue.close()


def test_output_names_cannot_escape_the_output_folder(registry, tmp_path):
    queue = JobQueue(registry, tmp_path / "jobs.db")
    wf = {"1": {"class_type": "SaveText", "inputs": {"text": ["2", 0], "filename_prefix": "../../x", "format": "txt"}},
          "2": {"class_type": "PrimitiveString", "inputs": {"value": "hi"}}}
    with pytest.raises(WorkflowInvalid) as info:
        queue.submit(wf)
    err = info.value.result.errors[0]
    assert err.type == "custom_validation_failed" and "escapes its folder" in err.message
    queue.close()


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nodes.registry import NodeRegistry
    from engine.jobs import JobQueue
    reg = NodeRegistry(); reg.load_builtin_packs(); reg.load_custom_nodes([Path(sys.argv[2])])
    q = JobQueue(reg, Path(sys.argv[1]))
    slow = {"s": {"class_type": "Steps", "inputs": {"steps": 1000, "delay": 0.05}},
            "o": {"class_type": "ShowInt", "inputs": {"value": ["s", 0]}}}
    first = q.submit(slow, priority=9)
    queued = [q.submit({"w": {"class_type": "Wait", "inputs": {"seconds": 0.0, "value": i}},
                        "o": {"class_type": "ShowInt", "inputs": {"value": ["w", 0]}}}) for i in range(3)]
    q.start()
    while q.get(first.id).status != "running":
        time.sleep(0.01)
    print(first.id, *[j.id for j in queued], flush=True)
    time.sleep(60)
""")


@pytest.mark.slow
def test_queue_survives_kill_minus_nine(reg, tmp_path):
    db = tmp_path / "jobs.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(DATA / "test_nodes")],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = child.stdout.readline().split()
        assert len(line) == 4, "the child did not start its jobs"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    running_id, *queued_ids = line
    queue = JobQueue(reg, db)
    assert queue.recovered == [running_id]
    assert queue.get(running_id).status == "failed_by_restart"
    assert [j.id for j in queue.pending()] == queued_ids
    queue.start()
    finished = [queue.wait(j, timeout=20) for j in queued_ids]
    assert [j.status for j in finished] == ["success"] * 3
    assert [j.outputs["o"]["value"] for j in finished] == [[0], [1], [2]]
    queue.close()


@pytest.mark.slow
def test_cli_run_exit_codes_and_outputs(tmp_path, isolated_folders):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({
        "1": {"class_type": "TextTemplate", "inputs": {"template": "hi {who}", "values": "who=you"}},
        "2": {"class_type": "SaveText", "inputs": {"text": ["1", 0], "filename_prefix": "t/out", "format": "txt"}}}))
    proc = run_cli("run", str(wf))
    assert proc.returncode == 0, proc.stderr
    assert "hi you" in proc.stdout and "out_00001_.txt" in proc.stdout
    assert (isolated_folders / "output" / "t" / "out_00001_.txt").read_text() == "hi you"
    proc = run_cli("run", str(wf), "--set", "1.values=who=me", "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["status"] == "success" and data["outputs"]["2"]["text"] == ["hi me"]
    proc = run_cli("run", str(wf), "--set", "1.values={\"x\": 1}")
    assert proc.returncode == 1 and "no value for placeholder(s) who" in proc.stderr
    failing = tmp_path / "fail.json"
    failing.write_text(json.dumps({
        "1": {"class_type": "Fail", "inputs": {"value": 1, "message": "nope"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}))
    proc = run_cli("run", str(failing), "--custom-nodes", str(DATA / "test_nodes"))
    assert proc.returncode == 3
    assert "FAILED at node 1 (Fail): ValueError: nope" in proc.stderr and "Traceback" not in proc.stderr
    history = run_cli("history", "--json")
    assert [j["status"] for j in json.loads(history.stdout)][:3] == ["error", "success", "success"]


class _TwoSlotBackend:
    """A stand-in remote backend: two jobs at once; each waits until released or interrupted."""

    slots = 2

    def __init__(self) -> None:
        import threading

        from engine.events import EventBus

        self.bus = EventBus()
        self.started: dict[str, threading.Event] = {}
        self.stop: dict[str, threading.Event] = {}
        self.interrupted: list[str | None] = []
        self._lock = threading.Lock()

    def _events(self, prompt_id):
        import threading

        with self._lock:
            return (self.started.setdefault(prompt_id, threading.Event()),
                    self.stop.setdefault(prompt_id, threading.Event()))

    def execute(self, plan, *, prompt_id=None, extra_data=None, node_timeout=None):
        from engine.executor import ExecutionResult

        started, stop = self._events(prompt_id)
        started.set()
        stopped = stop.wait(timeout=30)
        status = "interrupted" if prompt_id in self.interrupted else "success"
        return ExecutionResult(prompt_id=prompt_id, status=status if stopped else "error",
                               outputs={"2": {"text": [prompt_id]}}, executed=list(plan.order))

    def interrupt(self, prompt_id=None):
        self.interrupted.append(prompt_id)
        self._events(prompt_id)[1].set()

    def shutdown(self, wait=0.0):
        pass


def test_a_backend_with_two_slots_runs_two_jobs_at_once_and_cancel_reaches_the_right_one(reg, tmp_path):
    from engine.backends import Backend

    backend = _TwoSlotBackend()
    assert isinstance(backend, Backend)
    queue = JobQueue(reg, tmp_path / "jobs.sqlite3", executor=backend)
    queue.start()
    try:
        first, second = queue.submit(show(1)), queue.submit(show(2))
        assert backend._events(first.id)[0].wait(10) and backend._events(second.id)[0].wait(10)
        assert {j.id for j in queue.running()} == {first.id, second.id}  # both running at once
        assert queue.cancel(second.id)
        assert backend.interrupted == [second.id]  # only that job is told to stop
        assert queue.wait(second.id, timeout=10).status == "interrupted"
        assert queue.get(first.id).status == "running"
        backend.stop[first.id].set()
        assert queue.wait(first.id, timeout=10).status == "success"
    finally:
        queue.close()
