"""The judge: a vision-capable chat model asked whether a case's output images satisfy its request.

"Ran" says a workflow executed; "resolved" says the result is what was asked for, the metric published
benchmarks of this field report. The judge sees the request and the images (OpenAI-style `image_url` parts
with base64 PNG data URLs; DashScope's multimodal API natively) and answers a JSON verdict. Its calls go
through LangChain chat models, so an eval's cassette records and replays them like the planner's.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel

from runtime import folders

MAX_IMAGES = 4  # a case's first images; more cost tokens without changing the verdict much
DEFAULT_VISION_MODELS = {"openai-compatible": "gpt-4o-mini", "dashscope": "qwen-vl-max"}

SYSTEM = """You judge image-generation results. You get a request and the images a workflow produced for it.
Decide whether the images satisfy the request: the subject, the edits asked for (colours, sizes, styles,
steps such as inverting, upscaling or removing something). Ignore image quality beyond what was asked.
Answer with only a JSON object: {"resolved": true or false, "reason": "one sentence"}"""

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


class Verdict(BaseModel):
    """The judge's answer for one case. `resolved` is None when it gave none (an error, or no reading)."""

    resolved: bool | None
    reason: str = ""
    images: int = 0
    error: str | None = None


def output_images(outputs: dict[str, Any], limit: int = MAX_IMAGES) -> list[Path]:
    """The image files a run's UI outputs name (ComfyUI's {"images": [{filename, subfolder, type}]})."""
    roots = {"output": folders.output_dir(), "temp": folders.temp_dir()}
    found: list[Path] = []
    for ui in outputs.values():
        for item in (ui or {}).get("images", []) if isinstance(ui, dict) else []:
            root = roots.get(item.get("type", "output")) if isinstance(item, dict) else None
            if root is None or "filename" not in item:
                continue
            try:
                path = folders.safe_join(root, str(Path(item.get("subfolder") or "") / item["filename"]))
            except ValueError:
                continue
            if path.is_file() and len(found) < limit:
                found.append(path)
    return found


def judge_messages(request: str, images: list[bytes]) -> list[BaseMessage]:
    """The request and the images, as one multimodal user message."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"Request: {request}\n\nDo these {len(images)} "
                                                            "image(s) satisfy the request?"}]
    parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{base64.b64encode(b).decode()}"}}
              for b in images]
    return [SystemMessage(SYSTEM), HumanMessage(content=parts)]


def parse_verdict(text: str) -> Verdict:
    """The JSON verdict in the judge's answer (bare, or fenced with words around it)."""
    match = _JSON_OBJECT.search(text or "")
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("resolved"), bool):
        return Verdict(resolved=None, error=f"the judge gave no verdict: {(text or '')[:200]!r}")
    return Verdict(resolved=data["resolved"], reason=str(data.get("reason", ""))[:500])


def judge(model: BaseChatModel, request: str, image_paths: list[Path]) -> Verdict:
    """Ask the model; a provider failure is the verdict's error, never the suite's crash."""
    from openai import OpenAIError

    from nodes.api.errors import ProviderError

    images = [p.read_bytes() for p in image_paths]
    if not images:
        return Verdict(resolved=None, error="no images to judge")
    try:
        reply = model.invoke(judge_messages(request, images))
    except (ProviderError, OpenAIError, LookupError, OSError, ValueError) as exc:  # LookupError: a cassette miss
        return Verdict(resolved=None, images=len(images), error=f"{type(exc).__name__}: {exc}")
    verdict = parse_verdict(str(reply.content))
    verdict.images = len(images)
    return verdict


class DashScopeVisionChatModel(BaseChatModel):
    """Qwen-VL through DashScope's multimodal conversation API, with the nodes' retries and errors."""

    profile: Any
    model: str = DEFAULT_VISION_MODELS["dashscope"]

    @property
    def _llm_type(self) -> str:
        return "dashscope-vision"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        from dashscope import MultiModalConversation

        from nodes.api.clients import _dashscope_call, _dashscope_error
        from nodes.api.errors import ProviderResponseError
        from nodes.api.providers import call_with_retries

        payload = [{"role": {"system": "system", "ai": "assistant"}.get(m.type, "user"), "content": _parts(m.content)}
                   for m in messages]

        def once():
            response = _dashscope_call(self.profile, MultiModalConversation.call, model=self.model,
                                       messages=payload)
            if getattr(response, "status_code", None) != 200:
                raise _dashscope_error(response, self.profile)
            return response

        response = call_with_retries(self.profile, once)
        try:
            content = response.output["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderResponseError("dashscope: the response has no message", provider="dashscope") from exc
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def _parts(content: Any) -> list[dict[str, str]]:
    """LangChain content as DashScope multimodal parts: {"text"} and {"image": data URL}."""
    if isinstance(content, str):
        return [{"text": content}]
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "image_url":
            parts.append({"image": part["image_url"]["url"]})
        elif isinstance(part, dict):
            parts.append({"text": part.get("text", "")})
        else:
            parts.append({"text": str(part)})
    return parts


def make_judge_model(provider: str, model: str | None = None) -> BaseChatModel:
    """A vision-capable chat model for a provider name (built-in kind or config profile).

    Raises the provider's ProviderError (unknown provider, no key) before any case is planned."""
    from nodes.api.providers import resolve_profile

    profile = resolve_profile(provider)
    name = model or DEFAULT_VISION_MODELS[profile.kind]
    if profile.kind == "dashscope":
        profile.key()  # no key: say so now
        return DashScopeVisionChatModel(profile=profile, model=name)
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=name, api_key=profile.key(), base_url=profile.base_url, timeout=profile.timeout,
                      max_retries=profile.max_retries, temperature=0)


__all__ = ["Verdict", "judge", "judge_messages", "make_judge_model", "output_images", "parse_verdict"]
