"""Generated workflows for benchmarks: long chains and wide layered DAGs of trivial nodes."""

from __future__ import annotations

import random
from typing import Any


def chain_workflow(n: int, class_type: str = "StringConcatenate") -> dict[str, Any]:
    """A chain of n nodes, each reading the previous one, ending in one output node."""
    wf: dict[str, Any] = {"0": {"class_type": "PrimitiveString", "inputs": {"value": "x"}}}
    for i in range(1, n - 1):
        wf[str(i)] = {"class_type": class_type, "inputs": {"string_a": [str(i - 1), 0], "string_b": "", "delimiter": ""}}
    wf[str(n - 1)] = {"class_type": "PreviewAny", "inputs": {"source": [str(n - 2), 0]}}
    return wf


def wide_workflow(n: int, width: int = 32, seed: int = 0) -> dict[str, Any]:
    """Layers of `width` nodes; each node reads two random nodes of the layer before; one output per node
    of the last layer."""
    rng = random.Random(seed)
    wf: dict[str, Any] = {}
    layer = []
    for i in range(width):
        wf[str(i)] = {"class_type": "PrimitiveString", "inputs": {"value": str(i)}}
        layer.append(str(i))
    count = width
    while count < n - width:
        nxt = []
        for _ in range(width):
            a, b = rng.choice(layer), rng.choice(layer)
            wf[str(count)] = {"class_type": "StringConcatenate",
                              "inputs": {"string_a": [a, 0], "string_b": [b, 0], "delimiter": ""}}
            nxt.append(str(count))
            count += 1
        layer = nxt
    for src in layer:
        if count >= n:
            break
        wf[str(count)] = {"class_type": "PreviewAny", "inputs": {"source": [src, 0]}}
        count += 1
    return wf
