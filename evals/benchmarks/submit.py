"""Benchmark: what it costs to submit a big workflow, per node, with and without the HTTP layer.

A 5,000-node chain of cheap built-in nodes (StringConcatenate) goes through `JobQueue.submit` (validate,
plan, store in SQLite) and through POST /prompt of the HTTP app, both with `fastapi.testclient.TestClient`
and straight into the ASGI app (the server's own cost: body parsing, validation, queueing, without the
client's encoding and thread hand-offs). The compiler alone is timed too, so the overhead of queueing and
serving shows as the difference. Profiles (--profile) cover the calling thread only; the TestClient runs
the app in another thread, so profile the ASGI path to see the server side.
Goal: at most 20 µs/node end to end (POST /prompt); the compiler alone needs about 5 µs/node.

Run: python -m evals.benchmarks.submit [--nodes 5000] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compiler import validate
from engine.jobs import JobQueue
from evals.benchmarks.graphs import chain_workflow
from nodes.registry import NodeRegistry


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _report(name: str, seconds: float, nodes: int) -> None:
    print(f"{name:<28} {seconds * 1000:9.1f} ms  {seconds / nodes * 1e6:7.1f} µs/node")


def _profile(name: str, fn: Callable[[], Any], top: int = 18) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    print(f"--- profile: {name} ---")
    print(out.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of each path")
    args = parser.parse_args(argv)
    workflow = chain_workflow(args.nodes)
    registry = NodeRegistry()
    registry.load_builtin_packs()

    with tempfile.TemporaryDirectory() as tmp:
        queue = JobQueue(registry, Path(tmp) / "jobs.sqlite3")
        paths: dict[str, Callable[[], Any]] = {
            "compiler (validate)": lambda: validate(workflow, registry),
            "JobQueue.submit": lambda: queue.submit(workflow),
        }
        client = _http_client(Path(tmp), registry)
        if client is not None:
            paths["POST /prompt (TestClient)"] = lambda: _post(client, workflow)
            body = json.dumps({"prompt": workflow}).encode()
            paths["POST /prompt (ASGI, no client)"] = lambda: asyncio.run(_asgi_post(client.app, body))
        print(f"{args.nodes}-node chain of StringConcatenate, best of {args.repeat}:")
        for name, fn in paths.items():
            fn()  # warm: class facts, imports
            _report(name, _best(fn, args.repeat), args.nodes)
        if args.profile:
            for name, fn in paths.items():
                _profile(name, fn)
        queue.close()
        if client is not None:
            client.close()


def _http_client(tmp: Path, registry: NodeRegistry) -> Any:
    """A TestClient on the real app with its own data folder; None when the HTTP extras are missing."""
    try:
        from fastapi.testclient import TestClient

        from mcp_server.http_app import create_app
        from mcp_server.service import NodeWeaverService
        from runtime.settings import load_settings
    except ImportError as exc:
        print(f"(HTTP path skipped: {exc})")
        return None
    settings = load_settings({"data_dir": str(tmp / "http-data")})
    service = NodeWeaverService(registry, settings=settings, start_worker=False)
    return TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1").__enter__()


async def _asgi_post(app: Any, body: bytes) -> None:
    """One POST /prompt straight into the ASGI app: the server's own cost, without an HTTP client's."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/prompt", "raw_path": b"/prompt", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8188)}
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    if status != [200]:
        raise SystemExit(f"POST /prompt (ASGI) answered {status}")


def _post(client: Any, workflow: dict[str, Any]) -> None:
    response = client.post("/prompt", json={"prompt": workflow})
    if response.status_code != 200:
        raise SystemExit(f"POST /prompt answered {response.status_code}: {response.text[:500]}")


if __name__ == "__main__":
    main()
