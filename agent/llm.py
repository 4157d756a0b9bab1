"""Chat models for the planner: OpenAI-compatible through langchain-openai, DashScope natively through the
dashscope SDK (wrapped as a LangChain chat model that shares the nodes' retry and error handling)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from nodes.api.providers import ProviderProfile, resolve_profile

DEFAULT_MODELS = {"openai-compatible": "gpt-4o-mini", "dashscope": "qwen-max"}


class DashScopeChatModel(BaseChatModel):
    """DashScope's text generation (Qwen) as a LangChain chat model."""

    profile: ProviderProfile
    model: str = "qwen-max"
    temperature: float = 0.2
    max_tokens: int = 4096

    @property
    def _llm_type(self) -> str:
        return "dashscope"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        from dashscope import Generation

        from nodes.api.clients import _dashscope_call, _dashscope_error
        from nodes.api.errors import ProviderResponseError
        from nodes.api.providers import call_with_retries

        role = {"system": "system", "human": "user", "ai": "assistant"}
        payload = [{"role": role.get(m.type, "user"), "content": str(m.content)} for m in messages]

        def once():
            response = _dashscope_call(self.profile, Generation.call, model=self.model, messages=payload,
                                       result_format="message", temperature=self.temperature,
                                       max_tokens=self.max_tokens)
            if getattr(response, "status_code", None) != 200:
                raise _dashscope_error(response, self.profile)
            return response

        response = call_with_retries(self.profile, once)
        try:
            text = response.output["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderResponseError("dashscope: the response has no message", provider="dashscope") from exc
        usage = getattr(response, "usage", None) or {}
        message = AIMessage(content=text, usage_metadata={
            "input_tokens": int(usage.get("input_tokens", 0) or 0),
            "output_tokens": int(usage.get("output_tokens", 0) or 0),
            "total_tokens": int(usage.get("total_tokens", 0) or 0)})
        return ChatResult(generations=[ChatGeneration(message=message)])


def make_chat_model(provider: str, model: str | None = None) -> BaseChatModel:
    """The chat model for a provider name (built-in kind or config profile)."""
    profile = resolve_profile(provider)
    name = model or DEFAULT_MODELS[profile.kind]
    if profile.kind == "dashscope":
        return DashScopeChatModel(profile=profile, model=name)
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=name, api_key=profile.key(), base_url=profile.base_url, timeout=profile.timeout,
                      max_retries=profile.max_retries, temperature=0.2)

