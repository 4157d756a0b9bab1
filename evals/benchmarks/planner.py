"""Benchmark: planning latency per request (offline planner, or an LLM provider when named), over suites.

Run: python -m evals.benchmarks.planner [SUITE.yaml ...] [--provider NAME] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent.planner import plan
from evals.environment import environment
from evals.suite import load_suite
from nodes.registry import NodeRegistry

DEFAULT_SUITES = [Path(__file__).resolve().parents[2].parent / "shared" / "evals" / "dev.yaml",
                  Path(__file__).resolve().parents[1] / "suites" / "nodeweaver.yaml"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suites", nargs="*", type=Path)
    parser.add_argument("--provider")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
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
