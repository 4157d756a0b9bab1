"""Recorded LLM conversations: record a suite run's model answers, replay them offline exactly.

A cassette maps a hash of the messages sent to the model's answer (text and token usage). Replaying
returns the recorded answer for the same messages and fails loudly on a conversation it never saw.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict


def conversation_key(messages: list[BaseMessage]) -> str:
    payload = json.dumps([[m.type, str(m.content)] for m in messages], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


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
            self.path.write_text(json.dumps({"version": 1, "entries": self.entries}, ensure_ascii=False, indent=1),
                                 encoding="utf-8")


class CassetteMissError(LookupError):
    """Replay was asked for a conversation the cassette does not hold."""


class RecordingChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    inner: Any
    cassette: Any

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        reply = self.inner.invoke(messages)
        usage = dict(getattr(reply, "usage_metadata", None) or {})
        with self.cassette.lock:
            self.cassette.entries[conversation_key(messages)] = {"content": str(reply.content), "usage": usage}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=str(reply.content),
                                                                        usage_metadata=usage or None))])


class ReplayChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    cassette: Any

    @property
    def _llm_type(self) -> str:
        return "replay"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        entry = self.cassette.entries.get(conversation_key(messages))
        if entry is None:
            raise CassetteMissError("the cassette holds no answer for this conversation: record it again")
        usage = entry.get("usage") or None
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=entry["content"],
                                                                        usage_metadata=usage))])
