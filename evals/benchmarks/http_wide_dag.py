"""Benchmark: the wide DAG of trivial INT adds end to end over HTTP, NodeWeaver against a real ComfyUI.

The graph is `engine.add_wide`: layers of 32 BenchIntAdd nodes (1,024 in all), each adding two random nodes
of the layer before, and a BenchSink on every add nobody reads. One run is what a client sees: POST /prompt
with a client_id, then wait on the /ws websocket for `executing` with node=null for that prompt. "cold" gives
the first layer fresh random constants, so nothing is cached; "cached" posts the same prompt again. Each run's
sink values are checked against the graph evaluated here, from /history, after the clock stops.

Both servers need the bench_nodes pack: `--start-nodeweaver` loads it itself; for ComfyUI copy or link
evals/benchmarks/bench_nodes.py into its custom_nodes/ folder.
Issue 12's bar: NodeWeaver at least 50x faster than ComfyUI 0.3.64 end to end.

Run: python -m evals.benchmarks.http_wide_dag --start-nodeweaver --comfyui http://127.0.0.1:8199 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from evals.benchmarks import bench_nodes
from evals.benchmarks.engine import add_wide

REPO = Path(__file__).resolve().parents[2]
FRESH_MAX = 1_000_000  # first-layer constants; 32 doublings keep every sum far below INT's 2**62


class BenchError(RuntimeError):
    """A server refused, failed or timed out: the benchmark stops with this message, not a traceback."""


@dataclass
class ServerResult:
    """One server's figures: medians and every sample, in seconds."""

    name: str
    url: str
    cold_s: float = 0.0
    cached_s: float = 0.0
    cold_runs: list[float] = field(default_factory=list)
    cached_runs: list[float] = field(default_factory=list)
    verified_runs: int = 0


def fresh_workflow(width: int, layers: int, rng: random.Random) -> dict[str, Any]:
    """The wide DAG (its shape fixed by seed 0) with new first-layer constants: a prompt no cache has seen."""
    workflow = add_wide(width * layers, width=width, seed=0)
    for i in range(width):
        workflow[str(i)]["inputs"]["b"] = rng.randint(0, FRESH_MAX)
    return workflow


def expected_sinks(workflow: dict[str, Any]) -> dict[str, int]:
    """Each BenchSink's value, computed here, so a run that skipped work cannot pass as fast."""
    values: dict[str, int] = {}

    def value(node_id: str) -> int:
        if node_id not in values:
            inputs = workflow[node_id]["inputs"]
            args = [value(v[0]) if isinstance(v, list) else v for v in (inputs["a"], inputs["b"])]
            values[node_id] = args[0] + args[1]
        return values[node_id]

    # node ids grow layer by layer, so evaluating in id order keeps the recursion one level deep
    for node_id in sorted((k for k in workflow if not k.startswith("sink")), key=int):
        value(node_id)
    return {k: values[n["inputs"]["value"][0]] for k, n in workflow.items() if n["class_type"] == "BenchSink"}


def _ws_url(base: str, client_id: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}/ws?clientId={client_id}"


def _wait_done(ws: ClientConnection, prompt_id: str, deadline: float) -> None:
    """Read /ws messages until this prompt's executing(node=null); an execution_error is a failure."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"prompt {prompt_id} did not finish in time")
        try:
            raw = ws.recv(timeout=left)
        except TimeoutError:
            continue
        if isinstance(raw, bytes) or '"progress_state"' in raw[:40]:  # previews; whole-graph progress
            continue  # (one per node, each listing every started node: not parsed, as it tells nothing here)
        message = json.loads(raw)
        data = message.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            continue
        if message.get("type") == "execution_error":
            raise BenchError(f"prompt {prompt_id} failed: {data.get('exception_message', data)}")
        if message.get("type") == "executing" and data.get("node") is None:
            return


def timed_run(http: httpx.Client, ws: ClientConnection, workflow: dict[str, Any], client_id: str,
              timeout_s: float) -> tuple[float, str]:
    """POST one prompt and wait for its end on the websocket: (seconds, prompt_id)."""
    start = time.perf_counter()
    response = http.post("/prompt", json={"prompt": workflow, "client_id": client_id})
    if response.status_code != 200:
        raise BenchError(f"POST /prompt answered {response.status_code}: {response.text[:500]}")
    prompt_id = response.json()["prompt_id"]
    _wait_done(ws, prompt_id, time.monotonic() + timeout_s)
    return time.perf_counter() - start, prompt_id


def check_outputs(http: httpx.Client, prompt_id: str, expected: dict[str, int]) -> None:
    """The prompt's /history entry: success, and every sink holding the value computed here."""
    response = http.get(f"/history/{prompt_id}")
    item = response.json().get(prompt_id) if response.status_code == 200 else None
    if not item:
        raise BenchError(f"/history has no entry for prompt {prompt_id} ({response.status_code})")
    status = (item.get("status") or {}).get("status_str")
    if status != "success":
        raise BenchError(f"prompt {prompt_id} ended with status {status!r}")
    outputs = item.get("outputs") or {}
    wrong = [k for k, v in expected.items() if (outputs.get(k) or {}).get("value") != [v]]
    if wrong:
        raise BenchError(f"prompt {prompt_id}: {len(wrong)} of {len(expected)} sinks missing or wrong, "
                         f"e.g. {wrong[0]}: {outputs.get(wrong[0])} != {expected[wrong[0]]}")


def bench_server(name: str, url: str, args: argparse.Namespace, rng: random.Random) -> ServerResult:
    """--warmup untimed pairs, then --repeat pairs of (cold, cached) runs on one websocket connection."""
    result = ServerResult(name=name, url=url)
    client_id = uuid.uuid4().hex
    with httpx.Client(base_url=url, timeout=args.timeout) as http, \
            connect(_ws_url(url, client_id), max_size=None, open_timeout=30) as ws:
        for i in range(args.warmup + args.repeat):
            workflow = fresh_workflow(args.width, args.layers, rng)
            expected = expected_sinks(workflow)
            times = []
            for _ in ("cold", "cached"):
                seconds, prompt_id = timed_run(http, ws, workflow, client_id, args.timeout)
                check_outputs(http, prompt_id, expected)
                times.append(seconds)
            if i >= args.warmup:
                result.cold_runs.append(times[0])
                result.cached_runs.append(times[1])
                result.verified_runs += 2
    result.cold_s = statistics.median(result.cold_runs)
    result.cached_s = statistics.median(result.cached_runs)
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_serving(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    """Until /object_info/BenchIntAdd answers: the server is up and the pack is loaded."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"nodeweaver serve exited with code {proc.returncode} before serving")
            try:
                response = http.get("/object_info/BenchIntAdd")
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code == 200 and "BenchIntAdd" in response.json():
                return
            raise BenchError(f"nodeweaver serve at {url} does not know BenchIntAdd: the bench pack did not load")
    raise BenchError(f"nodeweaver serve at {url} did not answer in {timeout_s:g} s")


@contextmanager
def started_nodeweaver() -> Iterator[str]:
    """`nodeweaver serve` on a free port with the bench pack and throwaway folders; yields its URL."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="nw-http-bench-") as tmp:
        env = dict(os.environ)
        for name in ("data", "input", "output"):
            (Path(tmp) / name).mkdir()
            env[f"NODEWEAVER_{name.upper()}_DIR"] = str(Path(tmp) / name)
        command = [sys.executable, "-m", "nodeweaver.cli", "serve", "--port", str(port),
                   "--custom-nodes", str(Path(bench_nodes.__file__).resolve())]
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115 - closed below, after the process
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait_serving(url, proc)
            except BenchError as exc:
                log.flush()
                tail = (Path(tmp) / "serve.log").read_text(errors="replace")[-2000:]
                raise BenchError(f"{exc}\n--- serve log ---\n{tail}") from None
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
            log.close()


def report(results: list[ServerResult], nodes: int, repeat: int) -> dict[str, Any]:
    """The JSON document: graph, every server's figures, and ComfyUI/NodeWeaver ratios when both ran."""
    doc: dict[str, Any] = {"graph": {"nodes": nodes, "kind": "wide DAG of BenchIntAdd + BenchSink"},
                           "repeat": repeat, "servers": {r.name: asdict(r) for r in results}}
    by_name = {r.name: r for r in results}
    if "nodeweaver" in by_name and "comfyui" in by_name:
        nw, comfy = by_name["nodeweaver"], by_name["comfyui"]
        doc["ratio"] = {"cold": comfy.cold_s / nw.cold_s, "cached": comfy.cached_s / nw.cached_s}
    return doc


def print_table(doc: dict[str, Any]) -> None:
    nodes = doc["graph"]["nodes"]
    print(f"wide DAG, {nodes:,} nodes, end to end over HTTP (POST /prompt → /ws done), "
          f"median of {doc['repeat']}:")
    print(f"{'server':<12}{'cold s':>10}{'µs/node':>10}{'cached s':>11}{'µs/node':>10}  url")
    for r in doc["servers"].values():
        print(f"{r['name']:<12}{r['cold_s']:>10.4f}{r['cold_s'] / nodes * 1e6:>10.1f}"
              f"{r['cached_s']:>11.4f}{r['cached_s'] / nodes * 1e6:>10.1f}  {r['url']}")
    if "ratio" in doc:
        print(f"ComfyUI / NodeWeaver: cold {doc['ratio']['cold']:.0f}x, cached {doc['ratio']['cached']:.0f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodeweaver", metavar="URL", help="a running NodeWeaver server with the bench pack")
    parser.add_argument("--start-nodeweaver", action="store_true",
                        help="start `nodeweaver serve` on a free port with the bench pack and temp folders")
    parser.add_argument("--comfyui", metavar="URL", help="a running ComfyUI with bench_nodes.py in custom_nodes/")
    parser.add_argument("--width", type=int, default=32, help="nodes per layer (default 32)")
    parser.add_argument("--layers", type=int, default=32, help="layers (default 32: 1,024 adds)")
    parser.add_argument("--repeat", type=int, default=3, help="cold+cached pairs timed; medians reported")
    parser.add_argument("--warmup", type=int, default=0, help="untimed cold+cached pairs first")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one prompt may take")
    parser.add_argument("--seed", type=int, help="seed of the fresh constants (default: random)")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.nodeweaver and args.start_nodeweaver:
        parser.error("give --nodeweaver URL or --start-nodeweaver, not both")
    if not (args.nodeweaver or args.start_nodeweaver or args.comfyui):
        parser.error("nothing to measure: give --nodeweaver URL, --start-nodeweaver and/or --comfyui URL")
    if args.width < 1 or args.layers < 1 or args.repeat < 1 or args.warmup < 0 or args.timeout <= 0:
        parser.error("--width, --layers and --repeat must be at least 1, --warmup at least 0, --timeout > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    results: list[ServerResult] = []
    try:
        if args.start_nodeweaver:
            with started_nodeweaver() as url:
                results.append(bench_server("nodeweaver", url, args, rng))
        elif args.nodeweaver:
            results.append(bench_server("nodeweaver", args.nodeweaver, args, rng))
        if args.comfyui:
            results.append(bench_server("comfyui", args.comfyui, args, rng))
    except (BenchError, httpx.HTTPError, WebSocketException, OSError) as exc:
        print(f"http_wide_dag: {exc}", file=sys.stderr)
        return 2
    nodes = len(add_wide(args.width * args.layers, width=args.width, seed=0))
    doc = report(results, nodes, args.repeat)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print_table(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
