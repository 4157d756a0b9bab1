"""The Ray backend on a real local Ray cluster (2 CPUs, started here): jobs through the JobQueue run on two
worker actors; nothing is lost or duplicated, events arrive in order, a worker killed with SIGKILL mid-job
costs nothing but time, cancel reaches queued and running jobs, and jobs follow the model a worker ran.

The nodes (tests/data/ray_pack) sleep, so two workers really run side by side on these 2-core machines.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from engine.jobs import JobQueue  # noqa: E402
from engine.ray_backend import RayBackend  # noqa: E402
from nodes.registry import NodeRegistry  # noqa: E402
from runtime.settings import load_settings  # noqa: E402

pytestmark = pytest.mark.slow

PACK = Path(__file__).resolve().parent / "data" / "ray_pack"


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module: 2 CPUs, so 2 CPU workers (1 CPU each) fit, and no more."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


class Harness:
    """A RayBackend under a JobQueue, with every event recorded per job."""

    def __init__(self, tmp_path: Path, workers: int = 2, retries: int = 1) -> None:
        self.settings = load_settings({"custom_nodes": [str(PACK)], "data_dir": tmp_path / "data"})
        registry = NodeRegistry()
        registry.load_builtin_packs()
        registry.load_custom_nodes([PACK])
        assert not registry.load_errors
        self.backend = RayBackend(None, settings=self.settings, workers=workers, retries=retries)
        self.events: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        self._lock = threading.Lock()
        self.backend.bus.subscribe(self._record)
        self.queue = JobQueue(registry, tmp_path / "jobs.sqlite3", executor=self.backend)
        self.queue.start()

    def _record(self, event) -> None:
        with self._lock:
            self.events[event.data.get("prompt_id")].append((event.type, dict(event.data)))

    def types(self, job_id: str) -> list[str]:
        with self._lock:
            return [t for t, _ in self.events[job_id]]

    def wait_running(self, job_id: str, timeout: float = 30.0) -> int:
        """The pid of the worker once it runs the job's sleep node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.backend.worker_pid(job_id)
            with self._lock:
                sleeping = any(t == "executing" and d.get("node") == "1" for t, d in self.events[job_id])
            if pid is not None and sleeping:
                return pid
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not start: {self.types(job_id)}")

    def close(self) -> None:
        self.queue.close()
        self.backend.shutdown()


@pytest.fixture
def harness(cluster, tmp_path):
    made: list[Harness] = []

    def make(**kwargs) -> Harness:
        made.append(Harness(tmp_path / str(len(made)), **kwargs))
        return made[-1]

    yield make
    for h in made:
        h.close()


def sleep_and_save(value: str, seconds: float, ckpt: str | None = None) -> dict:
    prompt = {"1": {"class_type": "RaySleep", "inputs": {"seconds": seconds, "value": value}},
              "2": {"class_type": "RaySave", "inputs": {"text": ["1", 0], "filename_prefix": "ray"}}}
    if ckpt is not None:
        prompt["0"] = {"class_type": "RayLoadModel", "inputs": {"ckpt_name": ckpt}}
        prompt["1"]["inputs"]["model"] = ["0", 0]
    return prompt


def test_fifty_jobs_none_lost_or_duplicated_events_in_order(harness):
    h = harness()
    jobs = [h.queue.submit(sleep_and_save(f"job {i}", 0.05)) for i in range(50)]
    done = [h.queue.wait(job.id, timeout=120) for job in jobs]

    assert [j.status for j in done] == ["success"] * 50
    assert [j.outputs["2"]["text"] for j in done] == [[f"job {i}"] for i in range(50)]
    names = [j.outputs["2"]["texts"][0]["filename"] for j in done]
    assert len(set(names)) == 50  # every job's file came back, under a name of its own
    output = h.settings.output_dir
    assert sorted(p.name for p in output.iterdir()) == sorted(names)
    assert {(output / n).read_text(encoding="utf-8") for n in names} == {f"job {i}" for i in range(50)}
    assert len({j.outputs["2"]["pid"][0] for j in done}) == 2  # both workers took jobs
    assert len(h.queue.history(limit=100)) == 50 and not h.queue.pending()

    for job in jobs:
        types = h.types(job.id)
        assert types[0] == "execution_start" and types.count("execution_start") == 1
        assert types.count("execution_success") == 1 and types.index("execution_success") == len(types) - 2
        last_type, last = h.events[job.id][-1]
        assert (last_type, last["node"]) == ("executing", None)
        nodes = [d["node"] for t, d in h.events[job.id] if t == "executing"]
        assert nodes == ["1", "2", None]
        assert types.index("executed") > nodes.index("2")


def test_worker_killed_mid_job_finishes_on_the_other_worker(harness):
    h = harness()
    job = h.queue.submit(sleep_and_save("survivor", 3.0))
    victim = h.wait_running(job.id)
    os.kill(victim, signal.SIGKILL)
    done = h.queue.wait(job.id, timeout=60)

    assert done.status == "success", done.error
    assert done.outputs["2"]["text"] == ["survivor"] and done.outputs["2"]["pid"][0] != victim
    assert (h.settings.output_dir / done.outputs["2"]["texts"][0]["filename"]).read_text() == "survivor"
    types = h.types(job.id)
    assert types.count("execution_start") == 1 and types[-2:] == ["execution_success", "executing"]
    assert h.backend.replaced == 1
    workers = h.backend.workers()
    assert len(workers) == 2 and victim not in [w["pid"] for w in workers]
    # the replacement takes work: two jobs at once both finish, on two live workers
    more = [h.queue.submit(sleep_and_save(f"after {i}", 0.5)) for i in range(2)]
    assert [h.queue.wait(j.id, timeout=60).status for j in more] == ["success", "success"]


def test_worker_lost_without_retries_fails_the_job_as_worker_lost(harness):
    h = harness(retries=0)
    job = h.queue.submit(sleep_and_save("doomed", 3.0))
    os.kill(h.wait_running(job.id), signal.SIGKILL)
    done = h.queue.wait(job.id, timeout=60)

    assert done.status == "error" and done.error["exception_type"] == "WorkerLost"
    assert h.types(job.id)[-2:] == ["execution_error", "executing"]
    after = h.queue.submit(sleep_and_save("next", 0.1))
    assert h.queue.wait(after.id, timeout=60).status == "success"


def test_cancel_of_a_queued_and_of_a_running_job(harness):
    h = harness()
    running = [h.queue.submit(sleep_and_save(f"long {i}", 60.0)) for i in range(2)]
    queued = h.queue.submit(sleep_and_save("never", 60.0))
    for job in running:
        h.wait_running(job.id)
    assert h.queue.get(queued.id).status == "queued"

    assert h.queue.cancel(queued.id)
    assert h.queue.cancel(running[0].id)
    stopped = h.queue.wait(running[0].id, timeout=20)
    assert stopped.status == "interrupted"
    assert h.types(running[0].id)[-2:] == ["execution_interrupted", "executing"]
    assert h.queue.get(queued.id).status == "cancelled"

    assert h.queue.cancel(running[1].id)
    assert h.queue.wait(running[1].id, timeout=20).status == "interrupted"
    assert h.queue.get(queued.id).status == "cancelled" and "execution_start" not in h.types(queued.id)


def test_jobs_follow_the_worker_that_ran_their_model(harness):
    h = harness()

    def ran_on(value: str, ckpt: str) -> int:
        job = h.queue.wait(h.queue.submit(sleep_and_save(value, 0.05, ckpt)).id, timeout=60)
        assert job.status == "success", job.error
        return job.outputs["2"]["pid"][0]

    first_a, first_b = ran_on("a1", "a.safetensors"), ran_on("b1", "b.safetensors")
    assert first_a != first_b  # both idle and neither had b: the less used worker took it
    assert [ran_on(f"a{i}", "a.safetensors") for i in range(2, 5)] == [first_a] * 3
    assert [ran_on(f"b{i}", "b.safetensors") for i in range(2, 5)] == [first_b] * 3
    models = {w["pid"]: w["models"] for w in h.backend.workers()}
    assert models == {first_a: ["a.safetensors"], first_b: ["b.safetensors"]}


def test_service_runs_jobs_on_ray_when_configured(cluster, tmp_path):
    from mcp_server.service import NodeWeaverService
    from nodes.registry import default_registry

    settings = load_settings({"custom_nodes": [str(PACK)], "data_dir": tmp_path,
                              "engine": {"backend": "ray", "ray_workers": 1}})
    service = NodeWeaverService(default_registry([PACK]), settings=settings)
    try:
        assert isinstance(service.queue.executor, RayBackend) and service.queue.executor.slots == 1
        job = service.submit(sleep_and_save("via the service", 0.05))
        done = service.queue.wait(job.id, timeout=60)
        assert done.status == "success" and done.outputs["2"]["pid"][0] != os.getpid()
        assert (settings.output_dir / done.outputs["2"]["texts"][0]["filename"]).is_file()
    finally:
        service.close()


def test_cli_worker_prints_the_ray_start_command(capsys):
    from nodeweaver.cli import main

    assert main(["worker", "--address", "10.1.2.3:6379", "--num-gpus", "2", "--print-command"]) == 0
    words = capsys.readouterr().out.split()
    assert Path(words[0]).name == "ray" and words[1:] == ["start", "--address", "10.1.2.3:6379", "--block",
                                                           "--num-gpus", "2"]


def test_serve_with_an_unreachable_ray_head_says_so_and_exits(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, NODEWEAVER_DATA_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "nodeweaver.cli", "serve", "--ray", "127.0.0.1:1", "--port", "0"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "cannot reach the Ray head at '127.0.0.1:1'" in proc.stderr and "Traceback" not in proc.stderr
