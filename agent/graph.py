"""The planning agent as a LangGraph graph.

understand → retrieve (registry search + the closest template) → draft (LLM, text form) → validate
→ [repair → validate]* → run? → [repair after a runtime error → validate → run]* → answer.

A chat model that can call tools (`bind_tools`) drafts and repairs in a bounded loop, draft ⇄ tools, over the
active catalog (agent/tools.py: search_nodes, get_node, search_templates, get_template, list_models,
list_inputs, validate) until it answers with a workflow or a budget (tool calls, tokens) ends the loop. A
model without `bind_tools` gets the catalog stuffed into its prompt instead; the choice is automatic.

Every step appends to a trace (tool used, errors seen, patch made, LLM calls and tokens), every tool call
included. With a checkpointer (SQLite) a plan can be resumed and inspected by its thread id.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.graph import END, StateGraph

from agent import prompts
from agent.offline.compose import Intents, plan_offline, subject_text
from agent.offline.extract import extract
from agent.tools import PlannerTools, code_block, node_line, read_workflow, result_text, summarize
from compiler import WorkflowFormatError, format_text, validate
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
    messages: list[BaseMessage]  # the tool-calling conversation (tool mode only)
    phase: str  # draft | repair: the step a tool result goes back to
    tool_calls: int
    candidate: str  # the last workflow the model passed to the validate tool
    budget_spent: str  # tool_calls | tokens, once a budget ended the loop

DEFAULT_MAX_TOOL_CALLS = 12
DEFAULT_MAX_TOKENS = 200_000


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

    def __init__(self, registry: NodeRegistry, llm: BaseChatModel, *, executor: Any = None, checkpointer: Any = None,
                 max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS, max_tokens: int = DEFAULT_MAX_TOKENS):
        self.registry = registry
        self.llm = llm
        self.executor = executor
        self.tools = PlannerTools(registry)
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        self.bound = _bind_tools(llm, self.tools)
        graph = StateGraph(PlanState)
        graph.add_node("understand", self.understand)
        graph.add_node("retrieve", self.retrieve)
        graph.add_node("draft", self.draft)
        graph.add_node("tools", self.call_tools)
        graph.add_node("validate", self.validate)
        graph.add_node("repair", self.repair)
        graph.add_node("run", self.run)
        graph.add_node("answer", self.answer)
        graph.set_entry_point("understand")
        graph.add_conditional_edges("understand", lambda s: "answer" if s.get("question") else "retrieve")
        graph.add_edge("retrieve", "draft")
        graph.add_conditional_edges("draft", self._after_model)
        graph.add_conditional_edges("tools", self._after_tools)
        graph.add_conditional_edges("validate", self._after_validate)
        graph.add_conditional_edges("repair", self._after_model)
        graph.add_conditional_edges("run", self._after_run)
        graph.add_edge("answer", END)
        self.graph = graph.compile(checkpointer=checkpointer)

    @property
    def uses_tools(self) -> bool:
        return self.bound is not None

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
        names = self._starting_nodes(request)
        if self.uses_tools:  # the model looks the rest up: a list of names and sockets is a head start
            catalog = "Likely starting points (call get_node for exact inputs):\n" + \
                "\n".join(node_line(self.registry, n) for n in names)
        else:
            catalog = "\n\n".join(self.registry.describe(n) for n in names)
        installed = (f"Installed checkpoints: {folders.model_files('checkpoints')}\n"
                     f"Installed LoRAs: {folders.model_files('loras')}\nInput files: {folders.input_files()}")
        offline = plan_offline(request, checkpoints=folders.model_files("checkpoints"),
                               loras=folders.model_files("loras"), inputs=folders.input_files(),
                               answers=state.get("answers"))
        hint = format_text(offline.workflow, self.registry) if offline.workflow else ""
        trace = list(state.get("trace", []))
        trace.append({"step": "retrieve", "tool": "search_nodes+get_node", "nodes": names,
                      "template": offline.template or None,
                      "mode": "tools" if self.uses_tools else "catalog-in-prompt"})
        return {"catalog": catalog + "\n\n" + installed, "template_hint": hint, "trace": trace}

    def _starting_nodes(self, request: str) -> list[str]:
        """Core nodes for the request's intents plus a registry search on its words (at most 16)."""
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
        return [n for n in names if n in self.registry][:16]

    def _system(self, state: PlanState) -> SystemMessage:
        base = prompts.TOOLS_SYSTEM if self.uses_tools else prompts.SYSTEM
        return SystemMessage(base + "\n\nCatalog:\n" + state.get("catalog", ""))

    def _ask(self, model: Any, messages: list, step: str, state: PlanState) -> tuple[AIMessage | None, dict]:
        started = time.perf_counter()
        try:
            reply = model.invoke(messages)
        except Exception as exc:  # provider failures end planning with a clear message
            kind = getattr(exc, "kind", type(exc).__name__)
            trace = list(state.get("trace", []))
            trace.append({"step": step, "error": {"type": kind, "message": str(exc)}})
            return None, {"status": "provider_error", "summary": f"the LLM provider failed: {exc}", "trace": trace}
        usage = getattr(reply, "usage_metadata", None) or {}
        tokens = int(usage.get("total_tokens", 0) or 0)
        return reply, {"llm_calls": state.get("llm_calls", 0) + 1, "tokens": state.get("tokens", 0) + tokens,
                       "_seconds": round(time.perf_counter() - started, 3)}

    def _request_message(self, state: PlanState) -> HumanMessage:
        user = f"Request: {state['request']}"
        if state.get("answers"):
            user += f"\nAnswers to earlier questions: {state['answers']}"
        if state.get("template_hint"):
            user += f"\n\nA template close to this request (adapt it or write your own):\n```python\n" \
                    f"{state['template_hint']}```"
        return HumanMessage(user)

    def _repair_message(self, state: PlanState) -> HumanMessage:
        if state.get("runtime_error"):
            content = prompts.RUNTIME.format(error=state["runtime_error"], draft=state.get("draft", ""))
        else:
            content = prompts.REPAIR.format(errors=_error_lines(state.get("errors", [])), draft=state.get("draft", ""))
        return HumanMessage(content + ("\n\n" + prompts.TOOLS_NOTE if self.uses_tools else ""))

    def draft(self, state: PlanState) -> dict:
        if self.uses_tools:
            return self._converse(state, "draft")
        messages = [self._system(state), self._request_message(state)]
        reply, update = self._ask(self.llm, messages, "draft", state)
        if reply is None:
            return update
        return self._take_draft(str(reply.content), "draft", state, update)

    def repair(self, state: PlanState) -> dict:
        if self.uses_tools:
            return self._converse(state, "repair")
        messages = [self._system(state), self._repair_message(state)]
        reply, update = self._ask(self.llm, messages, "repair", state)
        if reply is None:
            return update
        update.update(self._repair_started(state))
        return self._take_draft(str(reply.content), "repair", state, update)

    def _repair_started(self, state: PlanState) -> dict:
        update: dict[str, Any] = {"attempts": state.get("attempts", 0) + 1, "runtime_error": None}
        if state.get("runtime_error"):
            update["run_attempts"] = state.get("run_attempts", 0) + 1
        return update

    # ---- the tool loop ----------------------------------------------------------------------------------
    def _converse(self, state: PlanState, phase: str) -> dict:
        """One model turn of the tool loop: start (draft) or go on (repair, or after tool results)."""
        messages = list(state.get("messages") or [])
        started: dict[str, Any] = {}
        if not messages or not isinstance(messages[-1], ToolMessage):  # a fresh turn, not a tool result
            if phase == "draft":
                messages = [self._system(state), self._request_message(state)]
            else:
                started = self._repair_started(state)
                messages.append(self._repair_message(state))
        if state.get("tokens", 0) >= self.max_tokens:  # checked before each call: the last one may go over
            return self._end_loop(state, phase, "tokens", messages)
        reply, update = self._ask(self.bound, messages, phase, state)
        if reply is None:
            return {**started, **update}
        messages.append(reply)
        update.update(started, messages=messages, phase=phase)
        if reply.tool_calls:
            trace = list(state.get("trace", []))
            trace.append({"step": phase, "tool": "llm", "seconds": update.pop("_seconds", None),
                          "tool_calls": [c["name"] for c in reply.tool_calls]})
            return {**update, "trace": trace}
        return self._take_draft(str(reply.content), phase, {**state, **started}, update)

    def call_tools(self, state: PlanState) -> dict:
        """Execute the next unanswered call of the model's last turn, within the tool-call budget. One call per
        graph step, so each is its own trace update (streamed to on_step) and its own checkpoint."""
        messages = list(state.get("messages") or [])
        call = _next_call(messages)
        used, phase = state.get("tool_calls", 0), state.get("phase", "draft")
        if call is None:
            return {}
        if used >= self.max_tool_calls:
            return self._end_loop(state, phase, "tool_calls", messages)
        result = self.tools.run(call["name"], call.get("args") or {})
        messages.append(ToolMessage(content=result_text(result), tool_call_id=call.get("id") or "",
                                    name=call["name"]))
        trace = list(state.get("trace", []))
        trace.append({"step": "tool_call", "phase": phase, "tool": call["name"], "args": call.get("args"),
                      "ok": "error" not in result, "result": summarize(call["name"], result)})
        update: dict[str, Any] = {"messages": messages, "trace": trace, "tool_calls": used + 1}
        if call["name"] == "validate" and "error" not in result:
            update["candidate"] = str((call.get("args") or {}).get("workflow_text", ""))
        return update

    def _end_loop(self, state: PlanState, phase: str, budget: str, messages: list) -> dict:
        """A budget ended the loop: take the last workflow the model validated, if it is new, else stop."""
        limit = self.max_tool_calls if budget == "tool_calls" else self.max_tokens
        used = state.get("tool_calls", 0) if budget == "tool_calls" else state.get("tokens", 0)
        candidate = code_block(state["candidate"]) if state.get("candidate") else ""
        fresh = bool(candidate.strip()) and candidate != state.get("draft")
        message = (f"the {budget.replace('_', ' ')} budget ({limit}) is spent: the tool loop ends here, "
                   + ("with the last workflow the model validated" if fresh else "with no new workflow"))
        trace = list(state.get("trace", []))
        trace.append({"step": "budget", "phase": phase, "budget": budget, "limit": limit, "used": used,
                      "message": message})
        update: dict[str, Any] = {"messages": messages, "trace": trace, "budget_spent": budget,
                                  "tool_calls": state.get("tool_calls", 0), "summary": message}
        if not fresh:
            return {**update, "status": "budget_spent"}
        return self._take_draft(candidate, phase, {**state, "trace": trace}, {**update, "_seconds": None},
                                tool="budget:last-validated")

    def _after_model(self, state: PlanState) -> str:
        if state.get("status") in ("provider_error", "budget_spent"):
            return "answer"
        messages = state.get("messages") or []
        if self.uses_tools and messages and isinstance(messages[-1], AIMessage) and messages[-1].tool_calls:
            return "tools"
        return "validate"

    def _after_tools(self, state: PlanState) -> str:
        if state.get("status") == "budget_spent":
            return "answer"
        if state.get("budget_spent"):
            return "validate"  # the loop ended on a validated candidate
        return "tools" if _next_call(state.get("messages") or []) else state.get("phase", "draft")

    # ---- drafts, validation, running --------------------------------------------------------------------
    def _take_draft(self, text: str, step: str, state: PlanState, update: dict, tool: str = "llm") -> dict:
        draft = code_block(text)
        trace = list(update.get("trace") or state.get("trace", []))
        entry = {"step": step, "tool": tool, "seconds": update.pop("_seconds", None), "draft": draft}
        if step == "repair":
            entry["patch"] = _patch_summary(state.get("draft", ""), draft)
        try:
            workflow = read_workflow(draft, self.registry)
            errors: list[dict] = []
        except WorkflowFormatError as exc:
            workflow, errors = None, [e.model_dump() for e in exc.errors]
        entry["parse_errors"] = errors
        trace.append(entry)
        return {**update, "draft": draft, "workflow": workflow, "errors": errors, "trace": trace}

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
        if state.get("attempts", 0) < state.get("max_repairs", 3) and not state.get("budget_spent"):
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
        if state.get("status") == "run_failed" and state.get("run_attempts", 0) < state.get("max_repairs", 3) \
                and not state.get("budget_spent"):
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
        if status in ("valid", "ran") and (not summary or state.get("budget_spent")):
            subject = subject_text(extract(state["request"], checkpoints=[], loras=[], inputs=[]))
            summary = f"{len(state['workflow'])} nodes planned for: {subject}" + (
                f" ({state['budget_spent'].replace('_', ' ')} budget spent)" if state.get("budget_spent") else "")
        trace = list(state.get("trace", []))
        trace.append({"step": "answer", "status": status})
        return {"status": status, "summary": summary, "trace": trace}

    # ---- entry ------------------------------------------------------------------------------------------
    def _recursion_limit(self) -> int:
        """Graph steps a plan may take: the repairs' and runs' steps, plus a model turn and a step per tool call."""
        return 100 + 2 * self.max_tool_calls

    def invoke(self, request: str, *, run: bool = False, answers: dict | None = None, max_repairs: int = 3,
               thread_id: str | None = None) -> PlanState:
        config = {"configurable": {"thread_id": thread_id or "default"},
                  "recursion_limit": self._recursion_limit()}
        state: PlanState = {"request": request, "run": run, "answers": answers or {}, "max_repairs": max_repairs,
                            "trace": [], "llm_calls": 0, "tokens": 0}
        return self.graph.invoke(state, config)

    def stream(self, request: str | None, **kwargs: Any):
        """Stream step updates; with request=None, resume the thread from its last checkpoint."""
        config = {"configurable": {"thread_id": kwargs.pop("thread_id", None) or "default"},
                  "recursion_limit": self._recursion_limit()}
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


def _bind_tools(llm: Any, tools: PlannerTools) -> Any:
    """The chat model with the planner's tools bound, or None when it cannot call tools (prompt stuffing)."""
    try:
        return llm.bind_tools(tools.langchain_tools())
    except (NotImplementedError, AttributeError):
        return None


def _next_call(messages: list) -> dict | None:
    """The first tool call of the last model turn that no tool result answers yet."""
    answered = 0
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            answered += 1
        elif isinstance(message, AIMessage):
            return message.tool_calls[answered] if answered < len(message.tool_calls) else None
        else:
            return None
    return None
