"""The eval runner: build a suite's environment, plan every case (optionally run it), check, measure."""

from __future__ import annotations

import copy
import inspect
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.planner import plan
from compiler import validate
from evals.checks import CheckResult, PlanOutcome, check_workflow
from evals.environment import environment
from evals.suite import Case, Suite
from nodes.registry import NodeRegistry, default_registry


class CaseResult(BaseModel):
    id: str
    lang: str
    category: str
    repeat: int = 0
    prompt: str
    status: str
    valid: bool
    passed: bool
    failed_checks: list[CheckResult] = Field(default_factory=list)
    nodes_present: bool | None = None  # every `nodes` expectation met (None: the case names no nodes)
    repairs: int = 0
    llm_calls: int = 0
    tokens: int = 0
    latency_s: float = 0.0
    ran: bool | None = None
    run_error: str | None = None
    resolved: bool | None = None  # the judge's verdict on the output images (None: not judged)
    verdict: dict[str, Any] | None = None  # the judge's whole answer: resolved, reason, images, error
    workflow: dict[str, Any] | None = None


class SuiteMetrics(BaseModel):
    cases: int
    valid_rate: float
    pass_rate: float
    coverage_rate: float | None = None  # share of cases naming nodes whose expected nodes are all present
    mean_repairs: float
    llm_calls: int
    tokens: int
    latency_p50_s: float
    latency_p95_s: float
    run_rate: float | None = None
    judged: int = 0  # cases whose output images the judge gave a verdict on
    resolved_rate: float | None = None  # share of the judged cases whose output satisfies the request
    pass_rate_by_repeat: list[float] = Field(default_factory=list)
    pass_rate_spread: float = 0.0
    consistent_cases: float = 1.0


class SuiteResult(BaseModel):
    suite: str
    planner: str
    started_at: float
    seconds: float
    metrics: SuiteMetrics
    cases: list[CaseResult]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def with_catalog(registry: NodeRegistry, catalog: Path) -> NodeRegistry:
    """A copy of `registry` with a ComfyUI /object_info catalog imported, leaving the given (often the
    process-wide default) registry as it was for whoever else uses it."""
    copied = copy.copy(registry)
    for name in ("_classes", "_display", "_pack_of", "_catalog", "_suggestions"):
        setattr(copied, name, dict(getattr(registry, name)))
    copied.packs, copied.load_errors = list(registry.packs), list(registry.load_errors)
    copied._invalidate()
    try:
        copied.import_catalog_file(Path(catalog))
    except (OSError, ValueError) as exc:  # ValueError covers JSON that does not parse
        raise ValueError(f"cannot import catalog {catalog}: {exc}") from None
    return copied


def _takes_workflow() -> bool:
    """Whether the planner accepts a base workflow to edit (`plan(..., workflow=)`)."""
    return "workflow" in inspect.signature(plan).parameters


def _not_planned(case: Case, repeat: int, check: CheckResult, status: str) -> CaseResult:
    """A case the planner gave no result for: failed, with the reason as its failed check."""
    return CaseResult(id=case.id, lang=case.lang, category=case.family(), repeat=repeat, prompt=case.prompt,
                      status=status, valid=False, passed=False, failed_checks=[check],
                      nodes_present=False if case.expect.get("nodes") else None)


def _verdict(judge_model: Any, request: str, outputs: dict[str, Any]) -> dict[str, Any] | None:
    """The judge's verdict on a run's output images; None when the run produced none."""
    from evals.judge import judge, output_images

    images = output_images(outputs)
    return judge(judge_model, request, images).model_dump() if images else None


def evaluate_case(case: Case, registry: NodeRegistry, *, chat_model: Any = None, provider: str | None = None,
                  run: bool = False, repeat: int = 0, executor: Any = None, judge_model: Any = None) -> CaseResult:
    options: dict[str, Any] = {}
    if case.workflow is not None:  # passed only when set, so planners without the parameter still run
        if not _takes_workflow():
            detail = "this planner takes no base workflow to edit"
            return _not_planned(case, repeat, CheckResult(check="workflow", passed=False, detail=detail), "failed")
        options["workflow"] = copy.deepcopy(case.workflow)
    started = time.perf_counter()
    try:
        result = plan(case.prompt, registry=registry, chat_model=chat_model, provider=provider, run=run,
                      executor=executor, **options)
    except Exception as exc:  # a planner bug fails this case, with its message, not the whole suite
        detail = f"the planner raised {type(exc).__name__}: {exc}"
        return _not_planned(case, repeat, CheckResult(check="plan", passed=False, detail=detail), "crashed")
    latency = time.perf_counter() - started
    valid = result.workflow is not None and validate(result.workflow, registry).valid
    checks = check_workflow(result.workflow, case.expect, valid=valid, outcome=PlanOutcome.of(result))
    failed = [c for c in checks if not c.passed]
    node_checks = [c for c in checks if c.check.startswith("nodes:")]
    run_error = None
    if run and result.status not in ("ran",) and result.errors:
        run_error = "; ".join(str(e.get("message", "")) for e in result.errors[:2])
    verdict = _verdict(judge_model, case.prompt, result.outputs) if judge_model and result.status == "ran" else None
    return CaseResult(id=case.id, lang=case.lang, category=case.family(), repeat=repeat, prompt=case.prompt,
                      status=result.status, valid=valid, passed=not failed, failed_checks=failed,
                      nodes_present=all(c.passed for c in node_checks) if node_checks else None,
                      repairs=result.repairs, llm_calls=result.llm_calls, tokens=result.tokens,
                      latency_s=round(latency, 4), ran=(result.status == "ran") if run else None, run_error=run_error,
                      resolved=verdict["resolved"] if verdict else None, verdict=verdict, workflow=result.workflow)


def metrics(cases: list[CaseResult], repeats: int) -> SuiteMetrics:
    n = max(len(cases), 1)
    latencies = [c.latency_s for c in cases]
    by_repeat = []
    for r in range(repeats):
        group = [c for c in cases if c.repeat == r]
        by_repeat.append(round(sum(c.passed for c in group) / max(len(group), 1), 4))
    outcomes: dict[str, set[bool]] = {}
    for c in cases:
        outcomes.setdefault(c.id, set()).add(c.passed)
    ran = [c.ran for c in cases if c.ran is not None]
    named = [c.nodes_present for c in cases if c.nodes_present is not None]
    judged = [c.resolved for c in cases if c.resolved is not None]
    return SuiteMetrics(
        cases=len({c.id for c in cases}), valid_rate=round(sum(c.valid for c in cases) / n, 4),
        pass_rate=round(sum(c.passed for c in cases) / n, 4),
        coverage_rate=round(sum(named) / len(named), 4) if named else None,
        mean_repairs=round(sum(c.repairs for c in cases) / n, 3), llm_calls=sum(c.llm_calls for c in cases),
        tokens=sum(c.tokens for c in cases), latency_p50_s=round(_percentile(latencies, 0.5), 4),
        latency_p95_s=round(_percentile(latencies, 0.95), 4),
        run_rate=round(sum(ran) / len(ran), 4) if ran else None, judged=len(judged),
        resolved_rate=round(sum(judged) / len(judged), 4) if judged else None, pass_rate_by_repeat=by_repeat,
        pass_rate_spread=round(statistics.pstdev(by_repeat), 4) if len(by_repeat) > 1 else 0.0,
        consistent_cases=round(sum(len(v) == 1 for v in outcomes.values()) / max(len(outcomes), 1), 4))


def run_suite(suite: Suite, *, registry: NodeRegistry | None = None, chat_model: Any = None,
              provider: str | None = None, run: bool = False, concurrency: int = 1, repeat: int = 1,
              workdir: Path | None = None, catalog: Path | None = None, judge_model: Any = None) -> SuiteResult:
    """Run every case `repeat` times inside the suite's environment. With `run` and a `judge_model` (a
    vision-capable chat model), each case that ran and saved images is judged: `resolved` beside `ran`.

    `catalog` (else the suite's own `catalog:`) is imported into a copy of the registry, so plans are
    validated against that ComfyUI's nodes."""
    registry = registry or default_registry()
    catalog = catalog or (Path(suite.catalog) if suite.catalog else None)
    if catalog is not None:
        registry = with_catalog(registry, catalog)
    started_at, started = time.time(), time.perf_counter()
    root = Path(workdir or tempfile.mkdtemp(prefix="nodeweaver-eval-"))
    jobs = [(case, r) for r in range(max(1, repeat)) for case in suite.cases]
    executor = None
    if run:
        from engine import Executor

        executor = Executor(registry)
    with environment(suite.environment, root, runnable=run):
        if concurrency > 1:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                results = list(pool.map(lambda job: evaluate_case(job[0], registry, chat_model=chat_model,
                                                                  provider=provider, run=run, repeat=job[1],
                                                                  executor=executor, judge_model=judge_model),
                                     jobs))
        else:
            results = [evaluate_case(case, registry, chat_model=chat_model, provider=provider, run=run, repeat=r,
                                     executor=executor, judge_model=judge_model) for case, r in jobs]
    planner = "offline" if chat_model is None and provider is None else f"llm:{provider or 'custom'}"
    return SuiteResult(suite=suite.suite, planner=planner, started_at=started_at,
                       seconds=round(time.perf_counter() - started, 3), metrics=metrics(results, max(1, repeat)),
                       cases=results)
