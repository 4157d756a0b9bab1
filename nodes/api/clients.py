"""One chat call and one image-synthesis task per provider, through the official SDKs, with our errors.

The SDKs' own retries are off (max_retries=0): `call_with_retries` owns the policy, so every provider
behaves the same way on 429, 5xx and timeouts.
"""

from __future__ import annotations

import json
import time
from typing import Any

from nodes.api.errors import (
    ContentModerationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    classify,
)
from nodes.api.providers import ProviderProfile, call_with_retries


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _messages(system_prompt: str, prompt: str) -> list[dict[str, str]]:
    messages = []
    if system_prompt.strip():
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": prompt})
    return messages


def _chat_arguments(req: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The chat request both SDKs take (they share OpenAI's parameter names)."""
    kwargs: dict[str, Any] = {"model": req["model"], "messages": _messages(req["system_prompt"], req["prompt"]),
                              "temperature": req["temperature"], **extra}
    if req.get("max_tokens"):
        kwargs["max_tokens"] = req["max_tokens"]
    if req.get("seed") is not None:
        kwargs["seed"] = req["seed"]
    if req.get("json_output"):
        kwargs["response_format"] = {"type": "json_object"}
    return kwargs


# ---- OpenAI-compatible ---------------------------------------------------------------------------------------
def openai_chat(profile: ProviderProfile, req: dict[str, Any]) -> str:
    import openai

    client = openai.OpenAI(api_key=profile.key(), base_url=profile.base_url, timeout=profile.timeout,
                           max_retries=0)
    kwargs = _chat_arguments(req)

    def once() -> str:
        try:
            response = client.chat.completions.create(**kwargs)
        except openai.APITimeoutError as exc:
            raise ProviderTimeoutError(f"{profile.name}: no answer within {profile.timeout:g} s",
                                       provider=profile.name) from exc
        except openai.APIConnectionError as exc:
            raise ProviderUnavailableError(f"{profile.name}: cannot connect to {profile.base_url}",
                                           provider=profile.name) from exc
        except openai.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            error = body.get("error", body) if isinstance(body, dict) else {}
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise classify(exc.status_code, code, message or str(exc), profile.name,
                           _retry_after(exc.response.headers)) from exc
        except openai.APIResponseValidationError as exc:
            raise ProviderResponseError(f"{profile.name}: malformed response", provider=profile.name) from exc
        except (ValueError, KeyError, TypeError) as exc:  # bodies that are not JSON at all
            raise ProviderResponseError(f"{profile.name}: malformed response ({type(exc).__name__})",
                                        provider=profile.name) from exc
        return _openai_text(response, profile)

    return call_with_retries(profile, once)


def _openai_text(response: Any, profile: ProviderProfile) -> str:
    try:
        choice = response.choices[0]
        finish = getattr(choice, "finish_reason", None)
        content = choice.message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise ProviderResponseError(f"{profile.name}: the response has no message", provider=profile.name) from exc
    if finish == "content_filter":
        raise ContentModerationError(f"{profile.name}: the answer was withheld by content filtering",
                                     provider=profile.name, code="content_filter")
    if not isinstance(content, str):
        raise ProviderResponseError(f"{profile.name}: the response has no text content", provider=profile.name)
    return content


# ---- DashScope ---------------------------------------------------------------------------------------------
def _dashscope_error(response: Any, profile: ProviderProfile) -> ProviderError:
    status = getattr(response, "status_code", None)
    code = getattr(response, "code", None)
    message = getattr(response, "message", None) or ""
    return classify(status, code, message, profile.name)


def _dashscope_call(profile: ProviderProfile, fn, **kwargs):
    import requests

    try:
        return fn(api_key=profile.key(), base_address=profile.base_url, request_timeout=profile.timeout, **kwargs)
    except ProviderError:
        raise
    except (requests.exceptions.Timeout, TimeoutError) as exc:
        raise ProviderTimeoutError(f"{profile.name}: no answer within {profile.timeout:g} s",
                                   provider=profile.name) from exc
    except (requests.exceptions.ConnectionError, ConnectionError) as exc:
        raise ProviderUnavailableError(f"{profile.name}: cannot connect to {profile.base_url}",
                                       provider=profile.name) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProviderResponseError(f"{profile.name}: malformed response ({type(exc).__name__})",
                                    provider=profile.name) from exc
    except Exception as exc:  # the SDK wraps transport errors in its own types
        name = type(exc).__name__.lower()
        if "timeout" in name or "timeout" in str(exc).lower():
            raise ProviderTimeoutError(f"{profile.name}: no answer within {profile.timeout:g} s",
                                       provider=profile.name) from exc
        raise ProviderUnavailableError(f"{profile.name}: request failed ({type(exc).__name__})",
                                       provider=profile.name) from exc


def dashscope_chat(profile: ProviderProfile, req: dict[str, Any]) -> str:
    from dashscope import Generation

    kwargs = _chat_arguments(req, result_format="message")

    def once() -> str:
        response = _dashscope_call(profile, Generation.call, **kwargs)
        if getattr(response, "status_code", None) != 200:
            raise _dashscope_error(response, profile)
        try:
            choice = response.output["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise ProviderResponseError(f"{profile.name}: the response has no message", provider=profile.name) from exc
        if isinstance(content, list):  # multimodal-style content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise ProviderResponseError(f"{profile.name}: the response has no text content", provider=profile.name)
        return content

    return call_with_retries(profile, once)


def dashscope_image_task(profile: ProviderProfile, params: dict[str, Any]) -> list[str]:
    """Submit a text-to-image task, poll it to the end, and return the image URLs."""
    from dashscope import ImageSynthesis

    from runtime.progress import check_interrupted, report_progress

    def submit():
        response = _dashscope_call(profile, ImageSynthesis.async_call, **params)
        if getattr(response, "status_code", None) != 200:
            raise _dashscope_error(response, profile)
        return response

    task = call_with_retries(profile, submit)
    try:
        task_id = task.output["task_id"]
    except (KeyError, TypeError) as exc:
        raise ProviderResponseError(f"{profile.name}: the task was not accepted (no task_id)",
                                    provider=profile.name) from exc
    deadline = time.monotonic() + profile.task_timeout
    polls = 0
    while True:
        check_interrupted()

        def fetch():
            return _fetch_task(profile, task_id)

        output = call_with_retries(profile, fetch)
        state = output.get("task_status")
        polls += 1
        report_progress(min(polls, 9), 10)
        if state == "SUCCEEDED":
            urls = [r.get("url") for r in output.get("results", []) if isinstance(r, dict) and r.get("url")]
            if not urls:
                failed = [r for r in output.get("results", []) if isinstance(r, dict) and r.get("code")]
                if failed:
                    raise classify(400, failed[0].get("code"), failed[0].get("message", ""), profile.name)
                raise ProviderResponseError(f"{profile.name}: the task succeeded without images",
                                            provider=profile.name)
            report_progress(10, 10)
            return urls
        if state in ("FAILED", "CANCELED", "UNKNOWN"):
            raise classify(400 if output.get("code") else None, output.get("code"),
                           output.get("message", f"task {state.lower()}"), profile.name)
        if time.monotonic() > deadline:
            raise ProviderTimeoutError(f"{profile.name}: image task {task_id} not finished after "
                                       f"{profile.task_timeout:g} s", provider=profile.name)
        time.sleep(profile.poll_interval)


def _fetch_task(profile: ProviderProfile, task_id: str) -> dict[str, Any]:
    """GET {base}/tasks/{id}: DashScope's task status (the SDK's fetch cannot take a base URL)."""
    import httpx

    url = f"{profile.base_url.rstrip('/')}/tasks/{task_id}"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {profile.key()}"}, timeout=profile.timeout)
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(f"{profile.name}: task status timed out", provider=profile.name) from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailableError(f"{profile.name}: task status failed ({type(exc).__name__})",
                                       provider=profile.name) from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise ProviderResponseError(f"{profile.name}: malformed task status", provider=profile.name) from exc
    if response.status_code != 200:
        raise classify(response.status_code, body.get("code") if isinstance(body, dict) else None,
                       body.get("message", "") if isinstance(body, dict) else "", profile.name,
                       _retry_after(response.headers))
    output = body.get("output") if isinstance(body, dict) else None
    if not isinstance(output, dict):
        raise ProviderResponseError(f"{profile.name}: task status without output", provider=profile.name)
    return output


def download(url: str, profile: ProviderProfile) -> bytes:
    import httpx

    def once() -> bytes:
        try:
            response = httpx.get(url, timeout=profile.timeout, follow_redirects=True)
        except httpx.TimeoutException as exc:
            raise ProviderTimeoutError(f"{profile.name}: image download timed out", provider=profile.name) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailableError(f"{profile.name}: image download failed ({type(exc).__name__})",
                                           provider=profile.name) from exc
        if response.status_code != 200:
            raise classify(response.status_code, None, f"image download failed with HTTP {response.status_code}",
                           profile.name, _retry_after(response.headers))
        return response.content

    return call_with_retries(profile, once)


def parse_json_output(text: str) -> str:
    """With the JSON switch on, hand on canonical JSON (fences stripped) or fail clearly."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[body.find("\n") + 1:] if "\n" in body else body
    try:
        return json.dumps(json.loads(body), ensure_ascii=False)
    except json.JSONDecodeError as exc:
        raise ProviderResponseError(f"the model did not return valid JSON: {exc.msg}") from exc
