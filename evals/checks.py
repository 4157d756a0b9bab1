"""The suite format's checks (../shared/evals/README.md): validates, nodes, inputs, links, absent.

Each check gives a pass/fail and, when it fails, a sentence saying which expectation was not met.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class CheckResult(BaseModel):
    check: str
    passed: bool
    detail: str = ""


def _nodes_of(workflow: dict, class_type: str) -> list[tuple[str, dict]]:
    return [(nid, n) for nid, n in workflow.items() if isinstance(n, dict) and n.get("class_type") == class_type]


def _value_matches(value: Any, spec: dict) -> bool:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return False  # a link is not a value
    if "equals" in spec:
        want = spec["equals"]
        if isinstance(want, int | float) and isinstance(value, int | float) and not isinstance(value, bool):
            return abs(float(value) - float(want)) < 1e-9
        return value == want
    text = str(value).lower() if value is not None else ""
    if "contains" in spec:
        return str(spec["contains"]).lower() in text
    if "contains_any" in spec:
        return any(str(w).lower() in text for w in spec["contains_any"])
    if "min" in spec or "max" in spec:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return spec.get("min", float("-inf")) <= value <= spec.get("max", float("inf"))
    return True


def check_workflow(workflow: dict | None, expect: dict, *, valid: bool) -> list[CheckResult]:
    results: list[CheckResult] = []
    workflow = workflow or {}
    if "validates" in expect:
        ok = valid == bool(expect["validates"])
        results.append(CheckResult(check="validates", passed=ok,
                                   detail="" if ok else f"expected validates={expect['validates']}, got {valid}"))
    classes = {n.get("class_type") for n in workflow.values() if isinstance(n, dict)}
    for item in expect.get("nodes", []):
        options = item if isinstance(item, list) else [item]
        ok = any(o in classes for o in options)
        results.append(CheckResult(check=f"nodes:{'|'.join(options)}", passed=ok,
                                   detail="" if ok else f"no {' or '.join(options)} node"))
    for spec in expect.get("inputs", []):
        nodes = _nodes_of(workflow, spec["class_type"])
        ok = any(_value_matches(n.get("inputs", {}).get(spec["input"]), spec) for _, n in nodes)
        condition = {k: v for k, v in spec.items() if k not in ("class_type", "input")}
        seen = [n.get("inputs", {}).get(spec["input"]) for _, n in nodes]
        results.append(CheckResult(check=f"inputs:{spec['class_type']}.{spec['input']}", passed=ok,
                                   detail="" if ok else f"wanted {condition}, found {seen[:4]}"))
    for spec in expect.get("links", []):
        sources = {nid for nid, _ in _nodes_of(workflow, spec["from"])}
        ok = any(isinstance(v := n.get("inputs", {}).get(spec["input"]), list) and len(v) == 2 and v[0] in sources
                 for _, n in _nodes_of(workflow, spec["to"]))
        results.append(CheckResult(check=f"links:{spec['from']}->{spec['to']}.{spec['input']}", passed=ok,
                                   detail="" if ok else "no such link"))
    for name in expect.get("absent", []):
        ok = name not in classes
        results.append(CheckResult(check=f"absent:{name}", passed=ok, detail="" if ok else f"{name} is present"))
    return results
