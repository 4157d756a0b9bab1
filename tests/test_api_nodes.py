"""LLMChat and DashScopeImageSynthesis over real HTTP through the real SDKs, against local fake providers."""

from __future__ import annotations

import json
import os
import time

import pytest
from conftest import REPO, run_cli
from fakes.provider_server import KEY, FakeProviders

from compiler import validate
from engine import Executor
from nodes.api import errors
from nodes.api.nodes import DashScopeImageSynthesis, LLMChat


@pytest.fixture(scope="module")
def fake():
    server = FakeProviders().start()
    yield server
    server.stop()


@pytest.fixture
def providers(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", f"{fake.url}/api/v1")
    monkeypatch.setenv("NODEWEAVER_RETRY_BASE_SECONDS", "0.05")
    monkeypatch.setenv("NODEWEAVER_TASK_POLL_SECONDS", "0.05")
    monkeypatch.setenv("NODEWEAVER_PROVIDER_TIMEOUT", "1.0")
    return fake


def chat(provider: str, model: str, prompt: str = "hello", **kw) -> str:
    return LLMChat().chat(provider, model, kw.pop("system_prompt", ""), prompt, **kw)[0]


@pytest.mark.parametrize("provider", ["openai-compatible", "dashscope"])
def test_success(providers, provider):
    assert chat(provider, "qwen-max", "a trip to Wuxi") == "A realistic landscape painting inspired by: a trip to Wuxi"
    request = [r for r in providers.requests if r.get("model") == "qwen-max"][-1]
    assert request["auth"] == f"Bearer {KEY}"


@pytest.mark.parametrize("provider", ["openai-compatible", "dashscope"])
def test_500_then_success_is_retried(providers, provider):
    providers.failures.clear()
    before = providers.count("", "flaky-500")
    assert chat(provider, "flaky-500").startswith("A realistic")
    assert providers.count("", "flaky-500") - before == 2


@pytest.mark.parametrize("provider", ["openai-compatible", "dashscope"])
def test_429_waits_for_retry_after(providers, provider):
    providers.failures.clear()
    start = time.monotonic()
    assert chat(provider, "rate-limited").startswith("A realistic")
    if provider == "openai-compatible":  # the OpenAI SDK exposes the Retry-After header
        assert time.monotonic() - start >= 0.9


@pytest.mark.parametrize("provider", ["openai-compatible", "dashscope"])
@pytest.mark.parametrize("model, error, retried", [
    ("slow", errors.ProviderTimeoutError, True),
    ("malformed", errors.ProviderResponseError, False),
    ("moderated", errors.ContentModerationError, False),
])
def test_failures_have_distinct_types(providers, monkeypatch, provider, model, error, retried):
    monkeypatch.setenv("NODEWEAVER_PROVIDER_TIMEOUT", "0.5")
    before = providers.count("", model)
    with pytest.raises(error) as info:
        chat(provider, model)
    attempts = providers.count("", model) - before
    assert (attempts > 1) == retried
    assert info.value.kind == error.kind


@pytest.mark.parametrize("provider", ["openai-compatible", "dashscope"])
def test_auth_failure_is_not_retried_and_never_shows_the_key(providers, monkeypatch, provider):
    wrong = "sk-wrong1234567"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    monkeypatch.setenv("DASHSCOPE_API_KEY", wrong)
    before = providers.count("", "qwen-max")
    with pytest.raises(errors.ProviderAuthError) as info:
        chat(provider, "qwen-max")
    assert providers.count("", "qwen-max") - before == 1
    assert wrong not in str(info.value)


def test_missing_key_is_a_config_error(monkeypatch, providers):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(errors.ProviderConfigError, match="OPENAI_API_KEY"):
        chat("openai-compatible", "gpt-4o-mini")


def test_json_output_switch(providers):
    text = chat("openai-compatible", "gpt-4o-mini", "three cities as JSON", json_output=True)
    assert json.loads(text) == {"cities": ["Hangzhou", "Suzhou", "Nanjing"]}
    with pytest.raises(errors.ProviderResponseError, match="valid JSON"):
        chat("openai-compatible", "gpt-4o-mini", "plain words please", json_output=True)


def test_image_synthesis_task_flow(providers):
    images, urls = DashScopeImageSynthesis().generate("wanx2-t2i-lite", "a lake at dusk", "", "768*960", 3, 2)
    assert tuple(images.shape) == (2, 960, 768, 3)
    assert len(urls.splitlines()) == 2
    request = [r for r in providers.requests if r["path"].endswith("image-synthesis")][-1]
    assert request["body"]["parameters"]["size"] == "768*960" and request["body"]["parameters"]["seed"] == 3
    with pytest.raises(errors.ContentModerationError):
        DashScopeImageSynthesis().generate("wanx2-t2i-lite", "something forbidden", "", "1024*1024", 1, 1)


def test_named_profile_from_config_file(providers, monkeypatch, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[providers.local-vllm]\nkind = "openai-compatible"\nbase_url = "{providers.url}/v1"\n'
                      f'api_key_env = "MY_VLLM_KEY"\nconcurrency = 2\n')
    monkeypatch.setenv("NODEWEAVER_CONFIG", str(config))
    monkeypatch.setenv("MY_VLLM_KEY", KEY)
    assert chat("local-vllm", "qwen-max", "x").startswith("A realistic")
    from nodes.api.providers import resolve_profile

    profile = resolve_profile("local-vllm")
    assert profile.concurrency == 2 and KEY not in repr(profile) and KEY not in profile.model_dump_json()


def test_engine_caches_remote_calls_and_reports_errors(providers, registry):
    workflow = {
        "1": {"class_type": "LLMChat", "inputs": {"provider": "dashscope", "model": "qwen-max", "system_prompt": "",
                                                  "prompt": "cache me", "temperature": 0.5, "max_tokens": 64,
                                                  "seed": 1, "json_output": False}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    executor = Executor(registry)
    plan = validate(workflow, registry).plan
    before = providers.count("text-generation", "qwen-max")
    assert executor.execute(plan).status == "success"
    assert executor.execute(plan).executed == []
    assert providers.count("text-generation", "qwen-max") - before == 1
    workflow["1"]["inputs"]["model"] = "moderated"
    failed = executor.execute(validate(workflow, registry).plan)
    assert failed.status == "error" and failed.error["exception_type"] == "ContentModerationError"


@pytest.mark.slow
def test_travel_poster_example_runs_end_to_end(providers, tmp_path, isolated_folders):
    example = REPO / "examples" / "travel_poster.json"
    env = {k: os.environ[k] for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DASHSCOPE_API_KEY",
                                      "DASHSCOPE_HTTP_BASE_URL", "NODEWEAVER_RETRY_BASE_SECONDS",
                                      "NODEWEAVER_TASK_POLL_SECONDS", "NODEWEAVER_PROVIDER_TIMEOUT")}
    proc = run_cli("run", str(example), "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = json.loads(proc.stdout)
    [image] = [i for ui in job["outputs"].values() for i in ui.get("images", [])]
    saved = isolated_folders / "output" / image["subfolder"] / image["filename"]
    from PIL import Image

    with Image.open(saved) as picture:
        assert picture.size == (768, 960)
    qwen = [r for r in providers.requests if r["path"].endswith("text-generation/generation")][-1]
    assert qwen["model"] == "qwen-max" and "湖州" in json.dumps(qwen["body"], ensure_ascii=False)
    wanx = [r for r in providers.requests if r["path"].endswith("image-synthesis")][-1]
    assert wanx["body"]["input"]["prompt"].startswith("A realistic landscape painting")
    assert KEY not in saved.read_bytes().decode("latin-1")  # keys never land in saved workflows


@pytest.mark.skipif(not os.environ.get("REAL_OPENAI_API_KEY"),
                    reason="set REAL_OPENAI_API_KEY (and optionally REAL_OPENAI_BASE_URL) to call a real provider")
def test_real_openai_compatible_provider(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", os.environ["REAL_OPENAI_API_KEY"])
    if os.environ.get("REAL_OPENAI_BASE_URL"):
        monkeypatch.setenv("OPENAI_BASE_URL", os.environ["REAL_OPENAI_BASE_URL"])
    assert chat("openai-compatible", os.environ.get("REAL_OPENAI_MODEL", "gpt-4o-mini"), "Say OK.")


@pytest.mark.skipif(not os.environ.get("REAL_DASHSCOPE_API_KEY"),
                    reason="set REAL_DASHSCOPE_API_KEY to call the real DashScope service")
def test_real_dashscope_provider(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", os.environ["REAL_DASHSCOPE_API_KEY"])
    assert chat("dashscope", "qwen-turbo", "Say OK.")
