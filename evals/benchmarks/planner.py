"""Benchmark: planning latency per request (offline planner, or an LLM provider when named), over suites;
and with --scaling, how the offline extraction's time grows with the request's length on adversarial texts;
with --startup, the wall time of a whole `nodeweaver plan` command (interpreter start and imports included).

Run: python -m evals.benchmarks.planner [SUITE.yaml ...] [--provider NAME] [--repeat 5]
     python -m evals.benchmarks.planner --scaling [--sizes 1000 4000 16000 64000]
     python -m evals.benchmarks.planner --startup [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.offline.compose import Intents, subject_text
from agent.offline.extract import extract, quoted_passages
from agent.offline.slots import template_values
from agent.offline.stages import read_request as read_stages
from agent.planner import plan
from evals.environment import environment
from evals.suite import load_suite
from nodes.registry import NodeRegistry

DEFAULT_SUITES = [Path(__file__).resolve().parents[2].parent / "shared" / "evals" / "dev.yaml",
                  Path(__file__).resolve().parents[1] / "suites" / "nodeweaver.yaml"]


def _template(n: int) -> str:
    fields = "".join(f"{{f{i}}}" for i in range(n // 12))
    return (f'fill the template "{fields}" with ' + " ".join(f"f{i}=v{i}," for i in range(n // 12)))[:n]


# Texts that made the extraction quadratic before its patterns were anchored (each maps a length to a text).
SHAPES: dict[str, Callable[[int], str]] = {
    "digits": lambda n: "1" * n,
    "chinese": lambda n: ("画一只猫在月光下,不要模糊" * n)[:n],
    "repeated words": lambda n: ("a cat with " * n)[:n],
    "dangling words": lambda n: "a cat" + " with" * (n // 5),
    "1x1x1x": lambda n: ("1x" * n)[:n],
    "quotes": lambda n: ("「a“b" * n)[:n],
    "commas": lambda n: (", " * n)[:n],
    "space, comma": lambda n: "a" + " " * (n - 4) + ", b",
    "spaces": lambda n: "seed cfg denoise " + " " * n + "x",
    "file names": lambda n: ("a." * n)[:n],
    "placeholders": _template,
}


def read_request(text: str) -> None:
    """Everything the offline planner reads from a request before it builds a workflow."""
    facts = extract(text, checkpoints=["v1-5-pruned-emaonly.safetensors"], loras=["pixel-art.safetensors"],
                    inputs=["photo.png"])
    Intents(facts, ["photo.png"])
    subject_text(facts)
    for quoted in quoted_passages(text)[:1]:
        template_values(text, quoted)
    read_stages(text, checkpoints=["v1-5-pruned-emaonly.safetensors"], loras=["pixel-art.safetensors"],
                inputs=["photo.png"])


def best_time(text: str, repeat: int = 3) -> float:
    """The fastest of `repeat` reads, in seconds (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        read_request(text)
        times.append(time.perf_counter() - start)
    return min(times)


def scaling(sizes: list[int], repeat: int) -> None:
    print(f"{'text':<16}" + "".join(f"{n:>10,}" for n in sizes) + "   (ms to read a request of that many chars)")
    for name, make in SHAPES.items():
        print(f"{name:<16}" + "".join(f"{best_time(make(n), repeat) * 1000:>10.1f}" for n in sizes), flush=True)


def _timed_plan(command: list[str], env: dict[str, str]) -> float:
    """One whole command's wall time in ms; a failing command stops the benchmark with its own message."""
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return elapsed


def startup(repeat: int, request: str = "a red fox in the snow") -> None:
    """Median wall time of `nodeweaver plan REQUEST` as a user runs it: most of it is imports, so this is what
    a heavy library loaded at import time shows up in (tests/test_cli_startup.py guards which ones load)."""
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "NODEWEAVER_DATA_DIR": str(Path(root) / "data"),
               "NODEWEAVER_MODELS_DIR": str(Path(root) / "models"), "NODEWEAVER_CONFIG": str(Path(root) / "none")}
        env.pop("NODEWEAVER_PLANNER_PROVIDER", None)
        command = [sys.executable, "-m", "nodeweaver.cli", "plan", request, "--json"]
        _timed_plan(command, env)  # warms the OS file cache; not counted
        times = sorted(_timed_plan(command, env) for _ in range(repeat))
    print(f"nodeweaver plan {request!r}, {repeat} runs: median {statistics.median(times):.0f} ms wall "
          f"(min {times[0]:.0f}, max {times[-1]:.0f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", type=Path)
    parser.add_argument("--provider")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scaling", action="store_true", help="time the extraction on long adversarial texts")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 4000, 16000, 64000])
    parser.add_argument("--startup", action="store_true", help="time whole `nodeweaver plan` commands")
    args = parser.parse_args(argv)
    if args.startup:
        startup(args.repeat)
        return 0
    if args.scaling:
        scaling(args.sizes, min(args.repeat, 3))
        return 0
    registry = NodeRegistry()
    registry.load_builtin_packs()
    print(f"{'suite':<14}{'requests':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'planned':>9}")
    for path in [p for p in (args.suites or DEFAULT_SUITES) if p.is_file()]:
        suite = load_suite(path)
        times, planned = [], 0
        with environment(suite.environment, Path(tempfile.mkdtemp())):
            for _ in range(args.repeat):
                for case in suite.cases:
                    start = time.perf_counter()
                    result = plan(case.prompt, registry=registry, provider=args.provider)
                    times.append((time.perf_counter() - start) * 1000)
                    planned += result.status == "valid"
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        print(f"{suite.suite:<14}{len(times):>9}{statistics.median(times):>9.2f}{p95:>9.2f}{times[-1]:>9.2f}"
              f"{planned / len(times):>9.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
