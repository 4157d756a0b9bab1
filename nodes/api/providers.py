"""Provider profiles (keys, base URLs, limits) and the retry loop every remote call goes through."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Literal, TypeVar

from pydantic import BaseModel, SecretStr

from nodes.api.errors import ProviderConfigError, ProviderError, register_secret

T = TypeVar("T")
ProviderKind = Literal["openai-compatible", "dashscope"]
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"
DASHSCOPE_DEFAULT_URL = "https://dashscope.aliyuncs.com/api/v1"


class ProviderProfile(BaseModel):
    """How to reach one provider. The key is a SecretStr: it prints as '**********'."""

    name: str
    kind: ProviderKind
    base_url: str
    api_key: SecretStr | None = None
    timeout: float = 60.0
    max_retries: int = 4
    retry_base: float = 1.0
    retry_cap: float = 30.0
    concurrency: int = 4
    poll_interval: float = 2.0
    task_timeout: float = 300.0

    def key(self) -> str:
        if self.api_key is None or not self.api_key.get_secret_value():
            env = "OPENAI_API_KEY" if self.kind == "openai-compatible" else "DASHSCOPE_API_KEY"
            raise ProviderConfigError(f"no API key for provider {self.name!r}: set {env} or api_key in the "
                                      f"[providers.{self.name}] section of the config file", provider=self.name)
        return self.api_key.get_secret_value()


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def builtin_profile(kind: ProviderKind) -> ProviderProfile:
    if kind == "openai-compatible":
        key = os.environ.get("OPENAI_API_KEY")
        url = os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_URL
    else:
        key = os.environ.get("DASHSCOPE_API_KEY")
        url = os.environ.get("DASHSCOPE_HTTP_BASE_URL") or DASHSCOPE_DEFAULT_URL
    register_secret(key)
    return ProviderProfile(name=kind, kind=kind, base_url=url, api_key=SecretStr(key) if key else None,
                           timeout=_env_float("NODEWEAVER_PROVIDER_TIMEOUT", 60.0),
                           retry_base=_env_float("NODEWEAVER_RETRY_BASE_SECONDS", 1.0),
                           poll_interval=_env_float("NODEWEAVER_TASK_POLL_SECONDS", 2.0))


def configured_profiles() -> dict[str, dict]:
    """Provider profiles from the config file; an unreadable file is reported when the CLI starts, not here."""
    from runtime.settings import ConfigError, current

    try:
        return current().providers
    except ConfigError:
        return {}


def profile_names() -> list[str]:
    return ["openai-compatible", "dashscope"] + [n for n in configured_profiles() if n not in (
        "openai-compatible", "dashscope")]


def resolve_profile(name: str) -> ProviderProfile:
    """A built-in kind, or a named profile from the config file ([providers.NAME])."""
    raw = configured_profiles().get(name)
    if raw is None:
        if name in ("openai-compatible", "dashscope"):
            return builtin_profile(name)  # type: ignore[arg-type]
        raise ProviderConfigError(f"unknown provider {name!r}: use openai-compatible, dashscope or a profile "
                                  "from the config file", provider=name)
    kind = raw.get("kind", "openai-compatible")
    if kind not in ("openai-compatible", "dashscope"):
        raise ProviderConfigError(f"provider {name!r} has unknown kind {kind!r}", provider=name)
    base = builtin_profile(kind)
    key = raw.get("api_key") or (os.environ.get(raw["api_key_env"]) if raw.get("api_key_env") else None)
    register_secret(key)
    fields = {k: v for k, v in raw.items() if k in ProviderProfile.model_fields and k not in ("api_key", "name", "kind")}
    return base.model_copy(update={"name": name, **fields, **({"api_key": SecretStr(key)} if key else {})})


_LIMITS: dict[str, threading.Semaphore] = {}
_LIMITS_LOCK = threading.Lock()


def _limit(profile: ProviderProfile) -> threading.Semaphore:
    with _LIMITS_LOCK:
        key = f"{profile.name}:{profile.concurrency}"
        if key not in _LIMITS:
            _LIMITS[key] = threading.Semaphore(max(1, profile.concurrency))
        return _LIMITS[key]


def call_with_retries(profile: ProviderProfile, call: Callable[[], T], *,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `call` under the provider's concurrency limit; retry retryable errors with exponential backoff
    and jitter, honouring Retry-After; raise the last error as it is."""
    from runtime.progress import check_interrupted

    attempt = 0
    while True:
        with _limit(profile):
            try:
                return call()
            except ProviderError as exc:
                error = exc
        if not error.retryable or attempt >= profile.max_retries:
            raise error
        delay = min(profile.retry_cap, profile.retry_base * 2 ** attempt) * (0.5 + random.random() / 2)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, profile.retry_cap * 4))
        attempt += 1
        check_interrupted()
        sleep(delay)
