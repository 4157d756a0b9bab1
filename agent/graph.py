"""The planning agent as a LangGraph graph.

understand → retrieve (registry search + the closest template) → draft (LLM, text form) → validate
→ [repair → validate]* → run? → [repair after a runtime error → validate → run]* → answer.

Every step appends to a trace (tool used, errors seen, patch made, LLM calls and tokens). With a
checkpointer (SQLite) a plan can be resumed and inspected by its thread id.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.graph import END, StateGraph

from agent import prompts
from agent.offline.compose import Intents, plan_offline, subject_text
from agent.offline.extract import extract
from compiler import WorkflowFormatError, format_text, parse_text, validate
from nodes.registry import NodeRegistry
from runtime import folders

CORE_FOR_INTENT = {
    "image": ["CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage"],
    "img2img": ["LoadImage", "VAEEncode"], "lora": ["LoraLoader"], "hires": ["LatentUpscaleBy"],
    "llm": ["LLMChat", "SaveText", "PreviewAny"], "wanx": ["DashScopeImageSynthesis", "SaveImage"],
    "text": ["TextTemplate", "LoadText", "SaveText", "RegexExtract", "StringConcatenate", "PreviewAny"],
}


class PlanState(TypedDict, total=False):
    request: str
    answers: dict[str, str]
    run: bool
    catalog: str
    template_hint: str
    draft: str
    workflow: dict | None
    errors: list[dict]
    runtime_error: dict | None
    attempts: int
    run_attempts: int
    max_repairs: int
    trace: list[dict]
    question: dict | None
    status: str
    summary: str
    outputs: dict
    llm_calls: int
    tokens: int


def _code_block(text: str) -> str:
    match = re.search(r"```(?:python|py|text|json)?\s*\n(.*?)```", text, re.DOTALL)
    return (match.group(1) if match else text).strip() + "\n"


def _error_lines(errors: list[dict]) -> str:
    lines = []
    for e in errors:
        where = f"node {e.get('node_id')} ({e.get('class_type')})" if e.get("node_id") else "workflow"
        if e.get("input_name"):
            where += f", input '{e['input_name']}'"
        extra = e.get("extra_info") or {}
        hint = f" suggestions: {extra['suggestions']}" if extra.get("suggestions") else ""
        lines.append(f"- [{e['type']}] {where}: {e['message']} {e.get('details', '')}{hint}".rstrip())
    return "\n".join(lines)


class PlannerGraph:
    """Builds and runs the LangGraph planner over one registry and one chat model."""

    def __init__(self, registry: NodeRegistry, llm: BaseChatModel, *, executor: Any = None, checkpointer: Any = None):
        self.registry = registry
        self.llm = llm
        self.executor = executor
        graph = StateGraph(PlanState)
        graph.add_node("understand", self.understand)
        graph.add_node("retrieve", self.retrieve)
        graph.add_node("draft", self.draft)
        graph.add_node("validate", self.validate)
        graph.add_node("repair", self.repair)
        graph.add_node("run", self.run)
        graph.add_node("answer", self.answer)
        graph.set_entry_point("understand")
        graph.add_conditional_edges("understand", lambda s: "answer" if s.get("question") else "retrieve")
        graph.add_edge("retrieve", "draft")
        graph.add_conditional_edges("draft", lambda s: "answer" if s.get("status") == "provider_error" else "validate")
        graph.add_conditional_edges("validate", self._after_validate)
        graph.add_conditional_edges("repair", lambda s: "answer" if s.get("status") == "provider_error" else "validate")
        graph.add_conditional_edges("run", self._after_run)
        graph.add_edge("answer", END)
        self.graph = graph.compile(checkpointer=checkpointer)

    # ---- steps ------------------------------------------------------------------------------------------
    def understand(self, state: PlanState) -> dict:
        facts = extract(state["request"], checkpoints=folders.model_files("checkpoints"),
                        loras=folders.model_files("loras"), inputs=folders.input_files())
        intents = Intents(facts, folders.input_files())
        trace = list(state.get("trace", []))
        summary = {k: v for k, v in vars(facts).items() if v not in (None, [], "") and k not in ("text", "lower")}
        trace.append({"step": "understand", "facts": summary})
        missing = [f for f in intents.image_files if f not in folders.input_files()]
        if missing and not state.get("answers", {}).get("image"):
            images = [x for x in folders.input_files() if x.lower().endswith((".png", ".jpg", ".jpeg", ".webp"))]
            question = {"text": f"{missing[0]} is not in the input folder. Which image should I use?",
                        "choices": images, "slot": "image"}
            trace.append({"step": "ask", "question": question})
            return {"question": question, "status": "question", "trace": trace}
        return {"trace": trace, "attempts": 0, "run_attempts": 0, "llm_calls": state.get("llm_calls", 0),
                "tokens": state.get("tokens", 0)}

    def retrieve(self, state: PlanState) -> dict:
        request = state["request"]
        facts = extract(request, checkpoints=[], loras=[], inputs=[])
        intents = Intents(facts, [])
        names: list[str] = []
        for key, wanted in (("image", intents.image and not intents.wanx), ("img2img", intents.img2img),
                            ("lora", bool(folders.model_files("loras")) and facts.has("lora")),
                            ("hires", intents.hires), ("llm", intents.llm), ("wanx", intents.wanx),
                            ("text", not intents.image)):
            if wanted:
                names += [n for n in CORE_FOR_INTENT[key] if n not in names]
        for hit in self.registry.search(request, limit=8):
            if hit.name not in names:
                names.append(hit.name)
        names = [n for n in names if n in self.registry][:16]
        catalog = "\n\n".join(self.registry.describe(n) for n in names)
        installed = (f"Installed checkpoints: {folders.model_files('checkpoints')}\n"
                     f"Installed LoRAs: {folders.model_files('loras')}\nInput files: {folders.input_files()}")
        offline = plan_offline(request, checkpoints=folders.model_files("checkpoints"),
                               loras=folders.model_files("loras"), inputs=folders.input_files(),
                               answers=state.get("answers"))
        hint = format_text(offline.workflow, self.registry) if offline.workflow else ""
        trace = list(state.get("trace", []))
        trace.append({"step": "retrieve", "tool": "search_nodes+get_node", "nodes": names,
                      "template": offline.template or None})
        return {"catalog": catalog + "\n\n" + installed, "template_hint": hint, "trace": trace}

    def _ask(self, messages: list, step: str, state: PlanState) -> tuple[str | None, dict]:
        started = time.perf_counter()
        try:
            reply = self.llm.invoke(messages)
        except Exception as exc:  # provider failures end planning with a clear message
            kind = getattr(exc, "kind", type(exc).__name__)
            trace = list(state.get("trace", []))
            trace.append({"step": step, "error": {"type": kind, "message": str(exc)}})
            return None, {"status": "provider_error", "summary": f"the LLM provider failed: {exc}", "trace": trace}
        usage = getattr(reply, "usage_metadata", None) or {}
        tokens = int(usage.get("total_tokens", 0) or 0)
        return str(reply.content), {"llm_calls": state.get("llm_calls", 0) + 1,
                                    "tokens": state.get("tokens", 0) + tokens,
                                    "_seconds": round(time.perf_counter() - started, 3)}

    def draft(self, state: PlanState) -> dict:
        user = f"Request: {state['request']}"
        if state.get("answers"):
            user += f"\nAnswers to earlier questions: {state['answers']}"
        if state.get("template_hint"):
            user += f"\n\nA template close to this request (adapt it or write your own):\n```python\n" \
                    f"{state['template_hint']}```"
        messages = [SystemMessage(prompts.SYSTEM + "\n\nCatalog:\n" + state.get("catalog", "")), HumanMessage(user)]
        text, update = self._ask(messages, "draft", state)
        if text is None:
            return update
        return self._take_draft(text, "draft", state, update)

    def repair(self, state: PlanState) -> dict:
        if state.get("runtime_error"):
            content = prompts.RUNTIME.format(error=state["runtime_error"], draft=state.get("draft", ""))
        else:
            content = prompts.REPAIR.format(errors=_error_lines(state.get("errors", [])), draft=state.get("draft", ""))
        messages = [SystemMessage(prompts.SYSTEM + "\n\nCatalog:\n" + state.get("catalog", "")), HumanMessage(content)]
        text, update = self._ask(messages, "repair", state)
        if text is None:
            return update
        update["attempts"] = state.get("attempts", 0) + 1
        if state.get("runtime_error"):
            update["run_attempts"] = state.get("run_attempts", 0) + 1
        update["runtime_error"] = None
        return self._take_draft(text, "repair", state, update)

    def _take_draft(self, text: str, step: str, state: PlanState, update: dict) -> dict:
        draft = _code_block(text)
        trace = list(state.get("trace", []))
        entry = {"step": step, "tool": "llm", "seconds": update.pop("_seconds", None), "draft": draft}
        if step == "repair":
            entry["patch"] = _patch_summary(state.get("draft", ""), draft)
        try:
            workflow = self._read_draft(draft)
            errors: list[dict] = []
        except WorkflowFormatError as exc:
            workflow, errors = None, [e.model_dump() for e in exc.errors]
        entry["parse_errors"] = errors
        trace.append(entry)
        return {**update, "draft": draft, "workflow": workflow, "errors": errors, "trace": trace}

    def _read_draft(self, draft: str) -> dict:
        """The text form, or API/UI JSON when the model answered with JSON instead."""
        if draft.lstrip().startswith("{"):
            from compiler.formats import parse_source, to_api_workflow

            return to_api_workflow(parse_source(draft), self.registry).prompt
        return parse_text(draft, self.registry)

    def validate(self, state: PlanState) -> dict:
        trace = list(state.get("trace", []))
        if state.get("workflow") is None:
            trace.append({"step": "validate", "tool": "compiler", "valid": False, "errors": state.get("errors", [])})
            return {"trace": trace}
        result = validate(state["workflow"], self.registry)
        errors = [e.model_dump() for e in result.errors]
        trace.append({"step": "validate", "tool": "compiler", "valid": result.valid, "errors": errors})
        return {"errors": errors, "trace": trace, "status": "valid" if result.valid else "invalid"}

    def _after_validate(self, state: PlanState) -> str:
        if not state.get("errors") and state.get("workflow"):
            return "run" if state.get("run") and self.executor is not None else "answer"
        if state.get("attempts", 0) < state.get("max_repairs", 3):
            return "repair"
        return "answer"

    def run(self, state: PlanState) -> dict:
        result = validate(state["workflow"], self.registry)
        outcome = self.executor.execute(result.plan)
        trace = list(state.get("trace", []))
        trace.append({"step": "run", "tool": "engine", "status": outcome.status, "executed": outcome.executed,
                      "error": outcome.error})
        if outcome.status == "success":
            return {"outputs": outcome.outputs, "status": "ran", "trace": trace, "runtime_error": None}
        error = {k: outcome.error.get(k) for k in ("node_id", "node_type", "exception_type", "exception_message")} \
            if outcome.error else {"exception_message": outcome.status}
        return {"runtime_error": error, "status": "run_failed", "trace": trace}

    def _after_run(self, state: PlanState) -> str:
        if state.get("status") == "run_failed" and state.get("run_attempts", 0) < state.get("max_repairs", 3):
            return "repair"
        return "answer"

    def answer(self, state: PlanState) -> dict:
        status = state.get("status", "")
        if state.get("question"):
            status = "question"
        elif status in ("valid", "ran"):
            pass
        elif status != "provider_error":
            status = "failed"
        summary = state.get("summary") or ""
        if status in ("valid", "ran") and not summary:
            summary = f"{len(state['workflow'])} nodes planned for: {subject_text(extract(state['request'], checkpoints=[], loras=[], inputs=[]))}"
        trace = list(state.get("trace", []))
        trace.append({"step": "answer", "status": status})
        return {"status": status, "summary": summary, "trace": trace}

    # ---- entry ------------------------------------------------------------------------------------------
    def invoke(self, request: str, *, run: bool = False, answers: dict | None = None, max_repairs: int = 3,
               thread_id: str | None = None) -> PlanState:
        config = {"configurable": {"thread_id": thread_id or "default"}, "recursion_limit": 100}
        state: PlanState = {"request": request, "run": run, "answers": answers or {}, "max_repairs": max_repairs,
                            "trace": [], "llm_calls": 0, "tokens": 0}
        return self.graph.invoke(state, config)

    def stream(self, request: str | None, **kwargs: Any):
        """Stream step updates; with request=None, resume the thread from its last checkpoint."""
        config = {"configurable": {"thread_id": kwargs.pop("thread_id", None) or "default"}, "recursion_limit": 100}
        state: PlanState | None = None
        if request is not None:
            state = {"request": request, "run": kwargs.get("run", False), "answers": kwargs.get("answers") or {},
                     "max_repairs": kwargs.get("max_repairs", 3), "trace": [], "llm_calls": 0, "tokens": 0}
        yield from self.graph.stream(state, config, stream_mode="updates")

    def snapshot(self, thread_id: str) -> dict:
        """The state a checkpointed plan reached (to inspect it, or to resume it)."""
        return dict(self.graph.get_state({"configurable": {"thread_id": thread_id}}).values)


def _patch_summary(before: str, after: str) -> dict:
    old, new = set(before.splitlines()), set(after.splitlines())
    return {"removed": sorted(old - new)[:20], "added": sorted(new - old)[:20]}
