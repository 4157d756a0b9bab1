"""The planner's service API: words in → a validated workflow (and optionally its run) out, with a trace.

With no LLM provider configured, the offline planner serves (no network, no key). With one, the LangGraph
agent plans with the LLM, validates, and repairs from the structured errors a bounded number of times.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel, Field

from agent.offline.compose import plan_offline
from compiler import format_text, validate
from nodes.registry import NodeRegistry, default_registry
from runtime import folders
from runtime.errors import TooLarge

MAX_REQUEST_CHARS = 20_000  # far past any description of a workflow; bounds the time one plan can take


class PlanResult(BaseModel):
    """What planning produced: a workflow, a question, or a clear failure, and what of the request it covers.

    `partial` is a valid workflow that leaves part of the request out; what it leaves out is in `not_covered`,
    each with the reason and what would provide it. Nothing asked for is dropped without being listed there."""

    status: str = Field(description="valid | partial | ran | question | failed | provider_error")
    request: str
    planner: str = Field(description="offline | llm:<provider>")
    workflow: dict[str, Any] | None = Field(None, description="The workflow (ComfyUI API JSON); with a question, "
                                            "the draft the answer will complete")
    text: str | None = None
    summary: str = ""
    question: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)
    covered: list[dict[str, Any]] = Field(default_factory=list, description="Each requested stage or capability "
                                          "the workflow provides: stage, kind, what, nodes")
    not_covered: list[dict[str, Any]] = Field(default_factory=list, description="Each requested part the workflow "
                                              "does not provide: stage, kind, what, reason, suggestion")
    partial: bool = Field(False, description="True when not_covered is not empty")
    notes: list[str] = Field(default_factory=list, description="Things worth knowing about the plan")
    diff: list[str] = Field(default_factory=list, description="When a given workflow was edited: the changes, "
                            "one line each (+ added, - removed, ~ changed)")
    outputs: dict[str, Any] = Field(default_factory=dict)
    trace: list[dict[str, Any]] = Field(default_factory=list)
    llm_calls: int = 0
    tool_calls: int = Field(0, description="Catalog lookups the LLM planner made (search_nodes, get_node ...)")
    tokens: int = 0
    repairs: int = 0
    seconds: float = 0.0
    thread_id: str | None = None


def _checkpointer(path: Path):
    from langgraph.checkpoint.sqlite import SqliteSaver

    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


def plan(request: str, *, provider: str | None = None, model: str | None = None, chat_model: Any = None,
         registry: NodeRegistry | None = None, run: bool = False, answers: dict[str, str] | None = None,
         max_repairs: int = 3, executor: Any = None, checkpoint_path: Path | None = None,
         on_step: Any = None, max_request_chars: int = MAX_REQUEST_CHARS,
         workflow: dict[str, Any] | None = None, max_tool_calls: int = 12, max_tokens: int = 200_000) -> PlanResult:
    """Plan a request. `chat_model` (a LangChain chat model) or `provider` selects the LLM planner. With
    `workflow` (API format), the request is an edit of that workflow: it is changed, not planned anew.
    `max_tool_calls` and `max_tokens` bound an LLM planner's catalog lookups and spend.

    Raises TooLarge (kind "request_too_large") for a request over `max_request_chars`, before any work."""
    check_request_size(request, max_request_chars)
    registry = registry or default_registry()
    started = time.perf_counter()
    answers = resolve_answers(answers)
    if not isinstance(request, str) or not request.strip():
        return PlanResult(status="failed", request=str(request), planner="offline",
                          summary="the request is empty: describe the workflow you want")
    if workflow is not None:
        result = _plan_edit(request, workflow, registry, run=run, answers=answers, executor=executor,
                            on_step=on_step)
    elif chat_model is None and provider is None:
        result = _plan_offline(request, registry, run=run, answers=answers, executor=executor, on_step=on_step)
    else:
        result = _plan_llm(request, registry, provider=provider, model=model, chat_model=chat_model, run=run,
                           answers=answers, max_repairs=max_repairs, executor=executor,
                           checkpoint_path=checkpoint_path, on_step=on_step,
                           budgets={"max_tool_calls": max_tool_calls, "max_tokens": max_tokens})
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def check_request_size(request: Any, limit: int = MAX_REQUEST_CHARS) -> None:
    """Refuse an over-long request up front: planning reads the whole text (and an LLM planner would send it),
    so its length is what bounds the time and the tokens one request can cost."""
    if isinstance(request, str) and len(request) > limit:
        raise TooLarge(f"the request is {len(request):,} characters long; the planner accepts at most {limit:,}. "
                       "Describe the workflow in fewer words.", kind="request_too_large",
                       details={"length": len(request), "limit": limit})


DEMO_CHOICE = "demo checkpoint"


def resolve_answers(answers: dict[str, str] | None) -> dict[str, str]:
    """Turn answers into planner inputs: choosing the demo checkpoint writes it (once) and names its file."""
    answers = dict(answers or {})
    if answers.get("checkpoint") == DEMO_CHOICE:
        from nodes.diffusion.tiny import TINY_NAME, write_tiny_checkpoint

        if f"{TINY_NAME}.safetensors" not in folders.model_files("checkpoints"):
            write_tiny_checkpoint(folders.models_dir(), diffusers_folder=False)
        answers["checkpoint"] = f"{TINY_NAME}.safetensors"
    return answers


def _executor(registry: NodeRegistry, executor: Any):
    if executor is not None:
        return executor
    from engine import Executor

    return Executor(registry)


def _plan_offline(request: str, registry: NodeRegistry, *, run: bool, answers: dict | None, executor: Any,
                  on_step: Any) -> PlanResult:
    trace: list[dict] = []

    def step(entry: dict) -> None:
        trace.append(entry)
        if on_step:
            on_step(entry)

    offline = plan_offline(request, registry=registry, checkpoints=folders.model_files("checkpoints"),
                           loras=folders.model_files("loras"), inputs=folders.input_files(), answers=answers)
    step({"step": "draft", "tool": "offline-planner", "template": offline.template or None,
          "stages": [c["kind"] for c in offline.covered + offline.not_covered]})
    accounting = {"covered": offline.covered, "not_covered": offline.not_covered, "notes": offline.notes,
                  "partial": bool(offline.not_covered)}
    return _finish_offline(request, registry, offline, accounting, step, trace, run=run, executor=executor)


def _plan_edit(request: str, workflow: dict[str, Any], registry: NodeRegistry, *, run: bool, answers: dict | None,
               executor: Any, on_step: Any) -> PlanResult:
    """Change a given workflow as the words say (offline, both languages), with the changes as a diff."""
    from agent.offline.edit import edit_workflow

    trace: list[dict] = []

    def step(entry: dict) -> None:
        trace.append(entry)
        if on_step:
            on_step(entry)

    edited = edit_workflow(workflow, request, registry=registry, checkpoints=folders.model_files("checkpoints"),
                           loras=folders.model_files("loras"), inputs=folders.input_files(),
                           upscale_models=folders.model_files("upscale_models"), answers=answers)
    changes = [c.as_dict() for c in edited.changes]
    gaps = [n.as_dict() for n in edited.not_covered]  # understood, but this workflow or catalog cannot do it
    step({"step": "edit", "tool": "offline-editor", "changes": changes, "not_covered": gaps,
          "not_understood": edited.not_understood})
    covered = [{"stage": i, "kind": c["kind"], "what": c["what"], "nodes": c["nodes"], "reason": "",
                "suggestion": ""} for i, c in enumerate(changes)]
    not_covered = [{"stage": len(covered) + i, "kind": g["kind"], "what": g["what"], "nodes": [],
                    "reason": g["reason"], "suggestion": g["suggestion"]} for i, g in enumerate(gaps)]
    not_covered += [{"stage": len(covered) + len(gaps) + i, "kind": "unknown", "what": clause, "nodes": [],
                     "reason": "not understood as a change to this workflow", "suggestion": ""}
                    for i, clause in enumerate(edited.not_understood)]
    accounting = {"covered": covered, "not_covered": not_covered, "notes": edited.notes,
                  "partial": bool(not_covered)}
    error = None
    if not changes and not gaps and edited.question is None:
        error = "I found no change to make in this request" + (
            f": {'; '.join(edited.not_understood)}" if edited.not_understood else ".")
    draft = SimpleNamespace(workflow=edited.workflow if error is None else None, question=edited.question,
                            summary=edited.summary, error=error)
    return _finish_offline(request, registry, draft, accounting, step, trace, run=run, executor=executor,
                           diff=edited.diff.lines())


def _finish_offline(request: str, registry: NodeRegistry, offline: Any, accounting: dict[str, Any], step: Any,
                    trace: list[dict], *, run: bool, executor: Any, diff: list[str] | None = None) -> PlanResult:
    """Ask, fail, or validate (and optionally run) what the offline planner or editor drafted."""
    base = {"request": request, "planner": "offline", "trace": trace, **accounting}
    if offline.question is not None:
        question = {"text": offline.question.text, "choices": offline.question.choices, "slot": offline.question.slot}
        step({"step": "ask", "question": question})
        draft = offline.workflow
        return PlanResult(status="question", question=question, summary=offline.question.text, workflow=draft,
                          text=format_text(draft, registry) if draft else None, diff=diff or [], **base)
    if offline.workflow is None:
        step({"step": "answer", "status": "failed", "reason": offline.error})
        return PlanResult(status="failed", summary=offline.error or "", **base)
    result = validate(offline.workflow, registry)
    errors = [e.model_dump() for e in result.errors]
    step({"step": "validate", "tool": "compiler", "valid": result.valid, "errors": errors})
    status = ("partial" if accounting["partial"] else "valid") if result.valid else "failed"
    planned = PlanResult(status=status, workflow=offline.workflow, text=format_text(offline.workflow, registry),
                         summary=offline.summary, errors=errors, diff=diff or [], **base)
    if result.valid and run:
        outcome = _executor(registry, executor).execute(result.plan)
        step({"step": "run", "tool": "engine", "status": outcome.status, "executed": outcome.executed,
              "error": outcome.error})
        planned.outputs = outcome.outputs
        planned.status = "ran" if outcome.status == "success" else "failed"
        if outcome.error:
            planned.errors = [{"type": "execution_error", "message": outcome.error.get("exception_message", ""),
                               "node_id": outcome.error.get("node_id"), "class_type": outcome.error.get("node_type"),
                               "details": outcome.error.get("exception_type", "")}]
    step({"step": "answer", "status": planned.status})
    return planned


def _plan_llm(request: str, registry: NodeRegistry, *, provider: str | None, model: str | None, chat_model: Any,
              run: bool, answers: dict | None, max_repairs: int, executor: Any, checkpoint_path: Path | None,
              on_step: Any, resume_thread: str | None = None, budgets: dict[str, int] | None = None) -> PlanResult:
    from agent.graph import PlannerGraph
    from agent.llm import make_chat_model
    from nodes.api.errors import ProviderError

    label = f"llm:{provider or getattr(chat_model, 'provider_name', None) or 'custom'}"
    try:
        llm = chat_model or make_chat_model(provider or "openai-compatible", model)
    except ProviderError as exc:
        return PlanResult(status="provider_error", request=request, planner=label, summary=str(exc),
                          errors=[{"type": exc.kind, "message": str(exc)}])
    checkpointer = _checkpointer(checkpoint_path) if checkpoint_path else None
    graph = PlannerGraph(registry, llm, executor=_executor(registry, executor) if run else None,
                         checkpointer=checkpointer, **(budgets or {}))
    state: dict[str, Any] = {}
    if resume_thread is not None:
        thread_id = resume_thread
        state = graph.snapshot(thread_id)
        if not state:
            return PlanResult(status="failed", request=request, planner=label,
                              summary=f"no checkpointed plan {thread_id!r} to resume")
        request = state.get("request", request)
        stream = graph.stream(None, thread_id=thread_id)
    else:
        thread_id = str(uuid.uuid4())
        stream = graph.stream(request, run=run, answers=answers, max_repairs=max_repairs, thread_id=thread_id)
    for update in stream:
        for _node, values in update.items():
            if not values:
                continue
            if on_step and values.get("trace"):
                on_step(values["trace"][-1])
            state.update(values)
    workflow = state.get("workflow")
    status = state.get("status", "failed")
    errors = state.get("errors") or []
    if state.get("runtime_error"):
        errors = errors + [{"type": "execution_error", **state["runtime_error"]}]
    if status == "provider_error":
        errors = [t["error"] for t in state.get("trace", []) if t.get("error")][-1:] or errors
    result = PlanResult(
        status=status, request=request, planner=label, workflow=workflow,
        text=state.get("draft"), summary=state.get("summary", ""), question=state.get("question"), errors=errors,
        outputs=state.get("outputs") or {}, trace=state.get("trace", []), llm_calls=state.get("llm_calls", 0),
        tool_calls=state.get("tool_calls", 0),
        tokens=state.get("tokens", 0), repairs=state.get("attempts", 0), thread_id=thread_id if checkpointer else None)
    if workflow and status in ("valid", "ran"):
        _account(result)
    return result


def _account(result: PlanResult) -> None:
    """What an LLM-drafted workflow covers of the request, judged from its nodes; a valid one that leaves a
    stage out becomes `partial`, as an offline plan would."""
    from agent.coverage import audit
    from agent.offline.stages import read_request

    parsed = read_request(result.request, checkpoints=folders.model_files("checkpoints"),
                          loras=folders.model_files("loras"), inputs=folders.input_files())
    if len(parsed.stages) == 1 and parsed.stages[0].kind == "generate":
        return  # a lone description is read as a picture by default; the LLM's reading of it stands
    result.covered, result.not_covered = audit(parsed, result.workflow or {})
    result.partial = bool(result.not_covered)
    if result.partial and result.status == "valid":
        result.status = "partial"


def resume(thread_id: str, *, checkpoint_path: Path, provider: str | None = None, model: str | None = None,
           chat_model: Any = None, registry: NodeRegistry | None = None, executor: Any = None,
           on_step: Any = None) -> PlanResult:
    """Continue a checkpointed LLM plan (after a crash or a stop) from its last completed step."""
    registry = registry or default_registry()
    started = time.perf_counter()
    result = _plan_llm("", registry, provider=provider, model=model, chat_model=chat_model, run=False,
                       answers=None, max_repairs=3, executor=executor, checkpoint_path=checkpoint_path,
                       on_step=on_step, resume_thread=thread_id)
    result.seconds = round(time.perf_counter() - started, 3)
    return result
