"""Benchmark: validation time of generated chains and wide DAGs (1,000 to 100,000 nodes).

Run: python -m evals.benchmarks.compiler [--sizes 1000 10000 100000] [--repeat 3]
ComfyUI's validator recurses and fails on chains deeper than about 990 nodes; this one has no depth limit.
"""

from __future__ import annotations

import argparse
import statistics
import time

from compiler import validate
from evals.benchmarks.graphs import chain_workflow, wide_workflow
from nodes.registry import NodeRegistry


def measure(workflow: dict, registry: NodeRegistry, repeat: int) -> tuple[float, bool]:
    times = []
    valid = False
    for _ in range(repeat):
        start = time.perf_counter()
        result = validate(workflow, registry)
        times.append(time.perf_counter() - start)
        valid = result.valid
    return statistics.median(times), valid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    registry = NodeRegistry()
    registry.load_builtin_packs()
    validate(chain_workflow(10), registry)  # warm the registry's caches
    print(f"{'graph':<12}{'nodes':>9}{'median s':>11}{'µs/node':>10}  valid")
    for shape, build in (("chain", chain_workflow), ("wide DAG", wide_workflow)):
        for n in args.sizes:
            workflow = build(n)
            seconds, valid = measure(workflow, registry, args.repeat)
            print(f"{shape:<12}{len(workflow):>9,}{seconds:>11.3f}{seconds / len(workflow) * 1e6:>10.1f}  {valid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
