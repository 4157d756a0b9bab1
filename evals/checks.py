"""The suite format's checks (../shared/evals/README.md): validates, nodes, inputs, links, absent, count on the
workflow, and status, covered, not_covered, question, question_slot on what the planner said about it.

Each check gives a pass/fail and, when it fails, a sentence saying which expectation was not met.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CheckResult(BaseModel):
    check: str
    passed: bool
    detail: str = ""


class PlanOutcome(BaseModel):
    """What the planner reported beside the workflow: its status, which requested capabilities the plan covers
    and which it does not (dicts with stage, kind, what, nodes, reason, suggestion), and any question asked."""

    status: str = ""
    covered: list[dict[str, Any]] = Field(default_factory=list)
    not_covered: list[dict[str, Any]] = Field(default_factory=list)
    question: dict[str, Any] | None = None

    @classmethod
    def of(cls, result: Any) -> PlanOutcome:
        """Read a PlanResult (or anything with those attributes; a planner without coverage gives none)."""
        return cls(status=str(getattr(result, "status", "") or ""),
                   covered=list(getattr(result, "covered", None) or []),
                   not_covered=list(getattr(result, "not_covered", None) or []),
                   question=getattr(result, "question", None))


def _nodes_of(workflow: dict, class_type: str) -> list[tuple[str, dict]]:
    return [(nid, n) for nid, n in workflow.items() if isinstance(n, dict) and n.get("class_type") == class_type]


def _value_matches(value: Any, spec: dict) -> bool:
    """Every condition the spec names holds: equals, contains, contains_any, not_contains, not_contains_any,
    min/max. `not_*` let a suite say that a prompt is free of instruction words or of a wrong negative."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        return False  # a link is not a value
    text = str(value).lower() if value is not None else ""
    words = lambda key: [str(w).lower() for w in spec[key]]  # noqa: E731
    if "equals" in spec and not _equal(value, spec["equals"]):
        return False
    if "contains" in spec and str(spec["contains"]).lower() not in text:
        return False
    if "contains_any" in spec and not any(w in text for w in words("contains_any")):
        return False
    if "not_contains" in spec and str(spec["not_contains"]).lower() in text:
        return False
    if "not_contains_any" in spec and any(w in text for w in words("not_contains_any")):
        return False
    if "min" in spec or "max" in spec:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return spec.get("min", float("-inf")) <= value <= spec.get("max", float("inf"))
    return True


def _equal(value: Any, want: Any) -> bool:
    if isinstance(want, int | float) and isinstance(value, int | float) and not isinstance(value, bool):
        return abs(float(value) - float(want)) < 1e-9
    return value == want


def _feeding(workflow: dict, nodes: list[tuple[str, dict]], input_name: str) -> list[tuple[str, dict]]:
    """The nodes among `nodes` whose output goes into an input called `input_name` (e.g. the KSampler's
    `negative`), so a check can speak of the negative prompt rather than of any CLIPTextEncode."""
    targets = {v[0] for n in workflow.values() if isinstance(n, dict)
               for k, v in (n.get("inputs") or {}).items()
               if k == input_name and isinstance(v, list) and len(v) == 2}
    return [(nid, n) for nid, n in nodes if nid in targets]


def _bounds_hold(number: int, spec: dict) -> bool:
    if "equals" in spec and number != spec["equals"]:
        return False
    return spec.get("min", number) <= number <= spec.get("max", number)


def _count_checks(workflow: dict, specs: Any) -> list[CheckResult]:
    """`count: {class_type: X, equals|min|max: N}` (or a list of them): how many nodes of a class (or of a
    list of classes, summed) there are — two SaveImage for two branches, one checkpoint loader."""
    results = []
    for spec in specs if isinstance(specs, list) else [specs]:
        classes = spec["class_type"] if isinstance(spec["class_type"], list) else [spec["class_type"]]
        number = sum(len(_nodes_of(workflow, c)) for c in classes)
        ok = _bounds_hold(number, spec)
        wanted = {k: v for k, v in spec.items() if k != "class_type"}
        results.append(CheckResult(check=f"count:{'|'.join(classes)}", passed=ok,
                                   detail="" if ok else f"wanted {wanted}, found {number}"))
    return results


def _kinds(records: list[dict[str, Any]]) -> list[str]:
    return [str(r.get("kind", "")) for r in records if isinstance(r, dict)]


def check_outcome(outcome: PlanOutcome, expect: dict) -> list[CheckResult]:
    """The checks on what the planner said: status, covered, not_covered, question, question_slot."""
    results: list[CheckResult] = []
    if "status" in expect:
        wanted = expect["status"] if isinstance(expect["status"], list) else [expect["status"]]
        ok = outcome.status in wanted
        results.append(CheckResult(check=f"status:{'|'.join(wanted)}", passed=ok,
                                   detail="" if ok else f"status is {outcome.status!r}"))
    for key, records in (("covered", outcome.covered), ("not_covered", outcome.not_covered)):
        have = _kinds(records)
        for item in expect.get(key, []):
            options = item if isinstance(item, list) else [item]  # a list: any one of these kinds
            ok = any(kind in have for kind in options)
            results.append(CheckResult(check=f"{key}:{'|'.join(options)}", passed=ok,
                                       detail="" if ok else f"{' or '.join(options)} is not in {key} {have}"))
    asked = outcome.question is not None or outcome.status == "question"
    if "question" in expect:
        ok = asked == bool(expect["question"])
        results.append(CheckResult(check="question", passed=ok, detail="" if ok else
                                   f"expected question={expect['question']}, status {outcome.status!r}"))
    if "question_slot" in expect:
        slot = (outcome.question or {}).get("slot")
        ok = slot == expect["question_slot"]
        results.append(CheckResult(check=f"question_slot:{expect['question_slot']}", passed=ok,
                                   detail="" if ok else f"asked about {slot!r}" if asked else "no question asked"))
    return results


def check_workflow(workflow: dict | None, expect: dict, *, valid: bool,
                   outcome: PlanOutcome | None = None) -> list[CheckResult]:
    """Every check `expect` names; the outcome checks need `outcome` (an empty one when not given)."""
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
        if "feeds" in spec:
            nodes = _feeding(workflow, nodes, spec["feeds"])
        ok = any(_value_matches(n.get("inputs", {}).get(spec["input"]), spec) for _, n in nodes)
        condition = {k: v for k, v in spec.items() if k not in ("class_type", "input", "feeds")}
        seen = [n.get("inputs", {}).get(spec["input"]) for _, n in nodes]
        results.append(CheckResult(check=f"inputs:{spec['class_type']}.{spec['input']}", passed=ok,
                                   detail="" if ok else f"wanted {condition}, found {seen[:4]}"))
    for spec in expect.get("links", []):
        froms = spec["from"] if isinstance(spec["from"], list) else [spec["from"]]
        tos = spec["to"] if isinstance(spec["to"], list) else [spec["to"]]
        sources = {nid for c in froms for nid, _ in _nodes_of(workflow, c)}
        ok = any(isinstance(v := n.get("inputs", {}).get(spec["input"]), list) and len(v) == 2 and v[0] in sources
                 for c in tos for _, n in _nodes_of(workflow, c))
        results.append(CheckResult(check=f"links:{'|'.join(froms)}->{'|'.join(tos)}.{spec['input']}", passed=ok,
                                   detail="" if ok else "no such link"))
    for name in expect.get("absent", []):
        ok = name not in classes
        results.append(CheckResult(check=f"absent:{name}", passed=ok, detail="" if ok else f"{name} is present"))
    if "count" in expect:
        results.extend(_count_checks(workflow, expect["count"]))
    results.extend(check_outcome(outcome or PlanOutcome(), expect))
    return results
