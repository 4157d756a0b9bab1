"""Benchmark: validation time of generated chains and wide DAGs (1,000 to 100,000 nodes), and the time and
size of the error report for workflows with thousands of failing nodes.

Run: python -m evals.benchmarks.compiler [--sizes 1000 10000 100000] [--repeat 3] [--errors 8000 100000]
ComfyUI's validator recurses and fails on chains deeper than about 990 nodes; this one has no depth limit.
The report's size per error should stay flat as the errors grow (it was N x N: 55 kB per error at 8,000).
"""

from __future__ import annotations

import argparse
import json
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


def measure_report(n: int, registry: NodeRegistry) -> tuple[float, float, int]:
    """n output nodes each missing an input: (validate s, report s, report bytes) as POST /prompt answers."""
    workflow = {str(i): {"class_type": "PreviewAny", "inputs": {}} for i in range(n)}
    start = time.perf_counter()
    result = validate(workflow, registry)
    validated = time.perf_counter()
    body = json.dumps({"error": result.comfy_error(), "node_errors": result.node_errors()}, allow_nan=False)
    return validated - start, time.perf_counter() - validated, len(body.encode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--errors", type=int, nargs="*", default=[8000, 100000],
                        help="failing-node counts for the error-report measurement")
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
    if args.errors:
        print(f"\n{'errors':>9}{'validate s':>12}{'report s':>10}{'report MB':>11}{'B/error':>9}")
    for n in args.errors:
        validate_s, report_s, size = measure_report(n, registry)
        print(f"{n:>9,}{validate_s:>12.3f}{report_s:>10.3f}{size / 1e6:>11.2f}{size / n:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
