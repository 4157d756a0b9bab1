"""Recorded LLM conversations: record a suite run's model answers, replay them offline exactly.

A cassette maps a hash of the messages sent to the model (tool calls and tool results included, and the names
of the tools bound, when there are any) to the model's answer: text, token usage and tool calls. Replaying
returns the recorded answer for the same messages and fails loudly on a conversation it never saw. A cassette
recorded with a tool-calling model replays on the planner's tool loop; one recorded without tools refuses
`bind_tools`, so the planner takes the same prompt-stuffing path it took when recording.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

VERSION = 2  # 2: entries may hold tool_calls / invalid_tool_calls / tools; version 1 files read the same


def _message_key(message: BaseMessage) -> list[Any]:
    """A message as hashed: [type, content], plus its tool calls or the call it answers when it has them (so
    plain conversations keep the keys version 1 gave them)."""
    key: list[Any] = [message.type, str(message.content)]
    if isinstance(message, AIMessage) and message.tool_calls:
        key.append([[c["name"], c.get("args"), c.get("id")] for c in message.tool_calls])
    if isinstance(message, ToolMessage):
        key.append(message.tool_call_id)
    return key


def conversation_key(messages: list[BaseMessage], tools: list[str] | None = None) -> str:
    payload = [_message_key(m) for m in messages]
    if tools:
        payload.insert(0, ["tools", sorted(tools)])
    # sort_keys orders tool arguments; a plain payload has no dicts, so its key is what version 1 computed
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _tool_names(tools: Any) -> list[str]:
    return [convert_to_openai_tool(t)["function"]["name"] for t in tools]


def _entry(reply: BaseMessage, tools: list[str]) -> dict[str, Any]:
    """What a cassette keeps of one answer (JSON-able): enough to rebuild the same AIMessage."""
    entry: dict[str, Any] = {"content": str(reply.content), "usage": dict(getattr(reply, "usage_metadata", None)
                                                                         or {})}
    calls = getattr(reply, "tool_calls", None) or []
    if calls:
        entry["tool_calls"] = [{"name": c["name"], "args": c.get("args") or {}, "id": c.get("id")} for c in calls]
    invalid = getattr(reply, "invalid_tool_calls", None) or []
    if invalid:
        entry["invalid_tool_calls"] = [{k: c.get(k) for k in ("name", "args", "id", "error")} for c in invalid]
    if tools:
        entry["tools"] = tools
    return entry


def _message(entry: dict[str, Any]) -> AIMessage:
    return AIMessage(content=entry["content"], usage_metadata=entry.get("usage") or None,
                     tool_calls=[{**c, "type": "tool_call"} for c in entry.get("tool_calls", [])],
                     invalid_tool_calls=[{**c, "type": "invalid_tool_call"}
                                         for c in entry.get("invalid_tool_calls", [])])


class Cassette:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text(encoding="utf-8")).get("entries", {})

    def save(self) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"version": VERSION, "entries": self.entries}, ensure_ascii=False,
                                            indent=1), encoding="utf-8")

    def has_tools(self) -> bool:
        """Whether it was recorded with tools bound (so replay must take the tool-calling path)."""
        return any(e.get("tools") for e in self.entries.values())


class CassetteMissError(LookupError):
    """Replay was asked for a conversation the cassette does not hold."""


class RecordingChatModel(BaseChatModel):
    """Passes each conversation to `inner` and records the answer; `bind_tools` binds inner's tools too."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    inner: Any
    cassette: Any
    tool_names: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording"

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingChatModel:
        """Raises NotImplementedError, as the inner model does, when it cannot call tools."""
        bound = self.inner.bind_tools(tools, **kwargs)
        return RecordingChatModel(inner=bound, cassette=self.cassette, tool_names=_tool_names(tools))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        reply = self.inner.invoke(messages)
        entry = _entry(reply, self.tool_names)
        with self.cassette.lock:
            self.cassette.entries[conversation_key(messages, self.tool_names)] = entry
        return ChatResult(generations=[ChatGeneration(message=_message(entry))])


class ReplayChatModel(BaseChatModel):
    """Answers from a cassette; takes tools only when the cassette was recorded with them."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    cassette: Any
    tool_names: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "replay"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ReplayChatModel:
        if not self.cassette.has_tools():
            raise NotImplementedError("this cassette was recorded without tools")
        return ReplayChatModel(cassette=self.cassette, tool_names=_tool_names(tools))

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        entry = self.cassette.entries.get(conversation_key(messages, self.tool_names))
        if entry is None:
            raise CassetteMissError("the cassette holds no answer for this conversation: record it again")
        return ChatResult(generations=[ChatGeneration(message=_message(entry))])
