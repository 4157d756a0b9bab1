"""Benchmark: the Ray backend's scaling and per-job overhead, with sleep-bound nodes (tests/data/ray_pack).

Sleep-bound jobs cost wall time, not CPU, so N workers should finish N times as many jobs per second on any
machine; what is lost is the backend's own cost (dispatch, event relay, files through the object store).
- throughput with 1 and 2 workers: `jobs` jobs of `sleep` seconds each through the JobQueue;
  scaling efficiency = throughput(2) / (2 × throughput(1)); goal ≥ 0.9.
- per-job overhead: jobs that do no work (sleep 0, one file written), run one at a time, through the local
  engine and through one Ray worker; the difference is what the Ray path adds to each job.

Run: python -m evals.benchmarks.ray_scaling [--jobs 24] [--sleep 0.25] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.executor import Executor
from engine.jobs import JobQueue
from nodes.registry import NodeRegistry
from runtime.settings import Settings, load_settings, using

PACK = Path(__file__).resolve().parents[2] / "tests" / "data" / "ray_pack"


def job(value: str, seconds: float) -> dict[str, Any]:
    return {"1": {"class_type": "RaySleep", "inputs": {"seconds": seconds, "value": value}},
            "2": {"class_type": "RaySave", "inputs": {"text": ["1", 0], "filename_prefix": "bench"}}}


def _registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_builtin_packs()
    registry.load_custom_nodes([PACK])
    if registry.load_errors:
        raise SystemExit(f"the benchmark's node pack did not load: {registry.load_errors}")
    return registry


def _run_all(queue: JobQueue, prompts: list[dict[str, Any]], one_at_a_time: bool) -> float:
    """Wall seconds from the first submit to the last job done; every job must succeed."""
    start = time.perf_counter()
    if one_at_a_time:
        done = [queue.wait(queue.submit(p).id, timeout=300) for p in prompts]
    else:
        jobs = [queue.submit(p) for p in prompts]
        done = [queue.wait(j.id, timeout=600) for j in jobs]
    seconds = time.perf_counter() - start
    failed = [j.status for j in done if j.status != "success"]
    if failed:
        raise SystemExit(f"{len(failed)} job(s) did not succeed: {failed[:3]}")
    return seconds


def _ray_queue(settings: Settings, workers: int, tag: str) -> tuple[JobQueue, Any]:
    from engine.ray_backend import RayBackend

    backend = RayBackend(None, settings=settings, workers=workers)
    queue = JobQueue(_registry(), settings.data_dir / f"jobs-{tag}.sqlite3", executor=backend)
    queue.start()
    _run_all(queue, [job(f"warm-{tag}-{i}", 0.0) for i in range(2 * workers)], one_at_a_time=False)  # warm
    return queue, backend


def throughput(settings: Settings, workers: int, jobs: int, sleep: float) -> dict[str, float]:
    queue, backend = _ray_queue(settings, workers, f"w{workers}")
    try:
        seconds = _run_all(queue, [job(f"w{workers}-{i}", sleep) for i in range(jobs)], one_at_a_time=False)
    finally:
        queue.close()
        backend.shutdown()
    return {"workers": workers, "jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds,
            "ideal_jobs_per_s": workers / sleep}


def overhead(settings: Settings, jobs: int) -> dict[str, float]:
    """Mean wall seconds per do-nothing job, one at a time: local engine vs one Ray worker."""
    registry = _registry()
    local = JobQueue(registry, settings.data_dir / "jobs-local.sqlite3", executor=Executor(registry))
    local.start()
    try:
        _run_all(local, [job(f"local-warm-{i}", 0.0) for i in range(3)], one_at_a_time=True)
        local_s = [_run_all(local, [job(f"local-{i}", 0.0)], one_at_a_time=True) for i in range(jobs)]
    finally:
        local.close()
    queue, backend = _ray_queue(settings, 1, "overhead")
    try:
        ray_s = [_run_all(queue, [job(f"ray-{i}", 0.0)], one_at_a_time=True) for i in range(jobs)]
    finally:
        queue.close()
        backend.shutdown()
    local_ms, ray_ms = statistics.median(local_s) * 1000, statistics.median(ray_s) * 1000
    return {"local_ms_per_job": local_ms, "ray_ms_per_job": ray_ms, "ray_overhead_ms": ray_ms - local_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=24, help="sleep-bound jobs per throughput run")
    parser.add_argument("--sleep", type=float, default=0.25, help="seconds each sleep-bound job sleeps")
    parser.add_argument("--overhead-jobs", type=int, default=30, help="do-nothing jobs timed one at a time")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        with tempfile.TemporaryDirectory(prefix="nw-ray-bench-") as root:
            settings = load_settings({"data_dir": root, "custom_nodes": [str(PACK)]})
            with using(settings):
                one = throughput(settings, 1, args.jobs, args.sleep)
                two = throughput(settings, 2, args.jobs, args.sleep)
                cost = overhead(settings, args.overhead_jobs)
    finally:
        ray.shutdown()
    report = {"one_worker": one, "two_workers": two,
              "scaling_efficiency": two["jobs_per_s"] / (2 * one["jobs_per_s"]), "goal": 0.9, **cost}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for row in (one, two):
        print(f"{row['workers']} worker(s): {row['jobs']} jobs of {args.sleep:g}s in {row['seconds']:.2f}s = "
              f"{row['jobs_per_s']:.2f} jobs/s (ideal {row['ideal_jobs_per_s']:.2f})")
    print(f"scaling efficiency (2 workers): {report['scaling_efficiency']:.3f} (goal >= 0.9)")
    print(f"per-job wall time, no work: local engine {cost['local_ms_per_job']:.1f} ms, Ray "
          f"{cost['ray_ms_per_job']:.1f} ms; the Ray path adds {cost['ray_overhead_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
