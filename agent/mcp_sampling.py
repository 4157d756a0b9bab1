"""The MCP caller's own model as the planner's LLM: a LangChain chat model over `sampling/createMessage`.

When `plan_workflow` is called by a client that can sample and the server has no provider of its own, the
planner's requests go back to the client, so no key lives on the server. The planner runs in a worker
thread while the MCP session lives on the server's event loop: each call is handed to that loop with
`run_coroutine_threadsafe` and waited for with a timeout, and a call made on the loop's own thread is
refused rather than left to deadlock.

Tools: a client that declares `sampling.tools` gets them natively (tool_use / tool_result blocks); any
other client gets them described in the system prompt and answers with a fenced JSON block, parsed back
into `AIMessage.tool_calls`, so the tool-using planner works either way.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import re
import warnings
from collections.abc import Sequence
from typing import Any

import mcp_types as mt
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from pydantic import ConfigDict, Field

from runtime.errors import NodeWeaverError

PROVIDER_NAME = "mcp-sampling"
# Sampling is deprecated from protocol 2026-07-28 on, yet it is the only way to reach the caller's model on the
# handshake-era connections that still offer it; the warning would fire on every planner call.
warnings.filterwarnings("ignore", message="The sampling capability is deprecated", category=MCPDeprecationWarning)

_FENCED_JSON = re.compile(r"```(?:json|tool_calls?)?\s*\n(.*?)```", re.DOTALL)
_DATA_URL = re.compile(r"^data:(?P<mime>[\w/+.-]+);base64,(?P<data>.+)$", re.DOTALL)


class SamplingError(NodeWeaverError):
    """The client's model could not answer: it refused, failed, timed out, or the session is gone."""


class McpSamplingChatModel(BaseChatModel):
    """A chat model whose every call is a `sampling/createMessage` request to the MCP client.

    `session` is the server session of the tool call (it can send requests back to the client) and `loop`
    the event loop it lives on; `native_tools` is whether the client declared `sampling.tools`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    session: Any
    loop: Any
    native_tools: bool = False
    related_request_id: Any = None
    max_tokens: int = 4096
    temperature: float | None = 0.2
    timeout_s: float = Field(300.0, gt=0, description="seconds one sampling request may take (a person may "
                                                      "have to approve it in the client)")
    model_hints: list[str] = Field(default_factory=list)
    intelligence_priority: float | None = 0.8
    speed_priority: float | None = 0.3
    cost_priority: float | None = None
    provider_name: str = PROVIDER_NAME

    @property
    def _llm_type(self) -> str:
        return PROVIDER_NAME

    # ---- tools --------------------------------------------------------------------------------------
    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any):
        """Tools as OpenAI-style schemas; sent natively or described in the prompt at call time."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # ---- one call -----------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        tools = [t["function"] for t in kwargs.get("tools") or [] if t.get("type") == "function"]
        native = self.native_tools and bool(tools)
        system, sampling = to_sampling_messages(messages, native=native)
        if tools and not native:
            system = "\n\n".join(p for p in (system, describe_tools(tools)) if p)
        request: dict[str, Any] = {
            "messages": sampling, "max_tokens": self.max_tokens, "system_prompt": system or None,
            "temperature": self.temperature, "stop_sequences": stop or None,
            "model_preferences": self._preferences(), "related_request_id": self.related_request_id}
        if native:
            request["tools"] = [mt.Tool(name=t["name"], description=t.get("description") or None,
                                        input_schema=t.get("parameters") or {"type": "object"}) for t in tools]
            choice = _tool_choice(kwargs.get("tool_choice"))
            if choice is not None:
                request["tool_choice"] = choice
        result = self._sample(request)
        turn = sum(isinstance(m, AIMessage) for m in messages)
        message = from_sampling_result(result, known_tools={t["name"] for t in tools}, parse_text=not native,
                                       turn=turn)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _preferences(self) -> mt.ModelPreferences:
        return mt.ModelPreferences(hints=[mt.ModelHint(name=h) for h in self.model_hints] or None,
                                   intelligence_priority=self.intelligence_priority,
                                   speed_priority=self.speed_priority, cost_priority=self.cost_priority)

    def _sample(self, request: dict[str, Any]) -> Any:
        """Run the request on the session's loop from this (worker) thread and wait, bounded."""
        loop: asyncio.AbstractEventLoop = self.loop
        if loop.is_closed() or not loop.is_running():
            raise SamplingError("the MCP session's event loop is not running: the client has gone",
                                kind="sampling_unavailable")
        if _running_loop() is loop:
            raise SamplingError("sampling was called on the event loop's own thread, where waiting for the "
                                "answer would block it forever; plan in a worker thread",
                                kind="sampling_unavailable")

        async def call() -> Any:
            return await asyncio.wait_for(self.session.create_message(**request), timeout=self.timeout_s)

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return future.result(timeout=self.timeout_s + 5)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()
            raise SamplingError(f"the client's model did not answer within {self.timeout_s:g} s",
                                kind="sampling_timeout") from None
        except MCPError as exc:
            raise SamplingError(f"the client refused or failed the sampling request: {exc}",
                                kind="sampling_failed") from None
        except concurrent.futures.CancelledError:
            raise SamplingError("the sampling request was cancelled (the client went away)",
                                kind="sampling_failed") from None
        except (ValueError, OSError, RuntimeError) as exc:  # bad message structure, a closed stream
            raise SamplingError(f"sampling failed: {exc}", kind="sampling_failed") from None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _tool_choice(choice: Any) -> mt.ToolChoice | None:
    if choice in (None, "auto"):
        return None
    if choice == "none":
        return mt.ToolChoice(mode="none")
    return mt.ToolChoice(mode="required")  # "any", "required", True or one tool's name


# ---- LangChain → MCP -------------------------------------------------------------------------------------
def to_sampling_messages(messages: list[BaseMessage], *, native: bool) -> tuple[str, list[mt.SamplingMessage]]:
    """The system prompt and the conversation as MCP sampling messages. Natively, tool calls and results
    travel as tool_use / tool_result blocks (results of one turn in one user message, as the protocol
    wants); otherwise as text the model can read, with its own calls shown as the JSON block it wrote."""
    system = "\n\n".join(_text(m.content) for m in messages if isinstance(m, SystemMessage))
    names = {c["id"]: c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    out: list[mt.SamplingMessage] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            continue
        if isinstance(message, ToolMessage):
            block = _tool_result(message, names, native=native)
            _append(out, "user", [block], merge=not native or _only_results(out))
        elif isinstance(message, AIMessage):
            _append(out, "assistant", _assistant_blocks(message, native=native), merge=False)
        else:
            _append(out, "user", _user_blocks(message.content), merge=not native)
    return system, out


def _only_results(out: list[mt.SamplingMessage]) -> bool:
    return bool(out) and out[-1].role == "user" and all(b.type == "tool_result" for b in out[-1].content_as_list)


def _append(out: list[mt.SamplingMessage], role: str, blocks: list[Any], *, merge: bool) -> None:
    """Consecutive messages of one role are joined: many hosts insist that user and assistant alternate."""
    if not blocks:
        return
    if merge and out and out[-1].role == role:
        out[-1] = mt.SamplingMessage(role=role, content=[*out[-1].content_as_list, *blocks])
    else:
        out.append(mt.SamplingMessage(role=role, content=blocks))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else p.get("text", "") for p in content or []
             if isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text")]
    return "\n".join(parts)


def _user_blocks(content: Any) -> list[Any]:
    """Text and images (OpenAI `image_url` parts with data URLs) of a human message."""
    if isinstance(content, str):
        return [mt.TextContent(type="text", text=content)] if content else []
    blocks: list[Any] = []
    for part in content or []:
        if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text"):
            blocks.append(mt.TextContent(type="text", text=part if isinstance(part, str) else part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            url = part["image_url"]["url"] if isinstance(part.get("image_url"), dict) else part.get("image_url")
            match = _DATA_URL.match(str(url or ""))
            if match is None:
                raise SamplingError("images go to the client's model as data: URLs only", kind="sampling_failed")
            blocks.append(mt.ImageContent(type="image", data=match["data"], mime_type=match["mime"]))
    return blocks


def _assistant_blocks(message: AIMessage, *, native: bool) -> list[Any]:
    text = _text(message.content)
    calls = message.tool_calls
    if native:
        blocks: list[Any] = [mt.TextContent(type="text", text=text)] if text else []
        return blocks + [mt.ToolUseContent(type="tool_use", id=c["id"], name=c["name"], input=c["args"])
                         for c in calls]
    if calls and "```" not in text:  # calls that did not come from a block the model wrote: show them as one
        text = (text + "\n\n" if text else "") + tool_call_block(calls)
    return [mt.TextContent(type="text", text=text)] if text else []


def _tool_result(message: ToolMessage, names: dict[str, str], *, native: bool) -> Any:
    text = _text(message.content)
    if native:
        return mt.ToolResultContent(type="tool_result", tool_use_id=message.tool_call_id,
                                    content=[mt.TextContent(type="text", text=text)],
                                    is_error=True if message.status == "error" else None)
    name = names.get(message.tool_call_id, message.name or "tool")
    failed = " (failed)" if message.status == "error" else ""
    return mt.TextContent(type="text", text=f"Result of {name} (call {message.tool_call_id}){failed}:\n{text}")


def tool_call_block(calls: list[dict[str, Any]]) -> str:
    payload = {"tool_calls": [{"name": c["name"], "arguments": c["args"]} for c in calls]}
    return "```json\n" + json.dumps(payload, ensure_ascii=False) + "\n```"


def describe_tools(tools: list[dict[str, Any]]) -> str:
    """The tools as prompt text, for a client whose sampling takes no tools."""
    lines = ["You can call tools. To call them, answer with only this fenced JSON block (one or more calls):",
             '```json\n{"tool_calls": [{"name": "TOOL", "arguments": {"ARG": "VALUE"}}]}\n```',
             "The results come back in the next message. When you need no tool, answer normally, without "
             "such a block.", "", "Tools:"]
    for tool in tools:
        schema = json.dumps(tool.get("parameters") or {}, ensure_ascii=False, separators=(",", ":"))
        lines.append(f"- {tool['name']}: {tool.get('description') or ''}\n  arguments (JSON Schema): {schema}")
    return "\n".join(lines)


# ---- MCP → LangChain -------------------------------------------------------------------------------------
def from_sampling_result(result: Any, *, known_tools: set[str], parse_text: bool, turn: int) -> AIMessage:
    """The client's answer as an AIMessage: text, tool calls (native blocks, or parsed from a fenced JSON
    block that names a bound tool), the model that answered, and token usage when the client reports it."""
    blocks = result.content if isinstance(result.content, list) else [result.content]
    text = "\n".join(b.text for b in blocks if getattr(b, "type", "") == "text")
    calls = [{"name": b.name, "args": dict(b.input), "id": b.id, "type": "tool_call"}
             for b in blocks if getattr(b, "type", "") == "tool_use"]
    if parse_text and not calls and known_tools:
        calls = parse_tool_calls(text, known_tools, turn=turn)
    metadata = {"model": result.model, "stop_reason": result.stop_reason, "provider": PROVIDER_NAME}
    return AIMessage(content=text, tool_calls=calls, response_metadata=metadata,
                     usage_metadata=_usage(getattr(result, "meta", None)))


def parse_tool_calls(text: str, known_tools: set[str], *, turn: int = 0) -> list[dict[str, Any]]:
    """Tool calls from fenced JSON blocks: {"tool_calls": [...]}, one {"name", "arguments"} or a list of
    them. A block naming no bound tool (a workflow in API JSON, say) is left as text."""
    calls: list[dict[str, Any]] = []
    for block in _FENCED_JSON.findall(text):
        try:
            data = json.loads(block)
        except json.JSONDecodeError:
            continue
        items = data.get("tool_calls") if isinstance(data, dict) and "tool_calls" in data else data
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                continue
            name = item.get("name") or item.get("tool")
            args = item.get("arguments", item.get("args", item.get("input", {})))
            if isinstance(args, str):
                try:
                    args = json.loads(args)
                except json.JSONDecodeError:
                    continue
            if name in known_tools and isinstance(args, dict):
                calls.append({"name": name, "args": args, "id": f"call_{turn}_{len(calls)}", "type": "tool_call"})
    return calls


def _usage(meta: dict[str, Any] | None) -> dict[str, int] | None:
    """Token usage if the client put it in the result's _meta (`usage`: input/output or prompt/completion)."""
    usage = (meta or {}).get("usage")
    if not isinstance(usage, dict):
        return None
    try:
        given = int(usage.get("input_tokens", usage.get("prompt_tokens", 0)) or 0)
        got = int(usage.get("output_tokens", usage.get("completion_tokens", 0)) or 0)
    except (TypeError, ValueError):
        return None
    return {"input_tokens": given, "output_tokens": got,
            "total_tokens": int(usage.get("total_tokens", given + got) or given + got)}


def image_part(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    """An OpenAI-style image part (data URL) that this model, ChatOpenAI and the judge all accept."""
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def sampling_model(session: Any, capabilities: Any, *, request_id: Any = None,
                   loop: asyncio.AbstractEventLoop | None = None) -> McpSamplingChatModel | None:
    """The client's model for this tool call, or None when the client cannot sample here: it declared no
    sampling capability, or the connection has no channel for requests back to it (2026-07-28 sessions)."""
    sampling = getattr(capabilities, "sampling", None)
    if sampling is None or not getattr(session, "can_send_request", False):
        return None
    return McpSamplingChatModel(session=session, loop=loop or asyncio.get_running_loop(),
                                native_tools=getattr(sampling, "tools", None) is not None,
                                related_request_id=request_id)


__all__ = ["PROVIDER_NAME", "McpSamplingChatModel", "SamplingError", "describe_tools", "from_sampling_result",
           "image_part", "parse_tool_calls", "sampling_model", "to_sampling_messages"]
