"""Provider errors with distinct types, so the agent's repair step (and users) can act on each.

Retryable: rate limits, 5xx, timeouts, dropped connections. Not retryable: authentication, quota, content
moderation, bad requests, malformed responses, missing configuration. Messages never contain keys.
"""

from __future__ import annotations

import re


class ProviderError(RuntimeError):
    """Base of all provider failures."""

    kind = "provider_error"
    retryable = False

    def __init__(self, message: str, *, provider: str = "", status: int | None = None, code: str | None = None,
                 retry_after: float | None = None):
        self.provider = provider
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(redact(message))


class ProviderConfigError(ProviderError):
    kind = "provider_config"


class ProviderAuthError(ProviderError):
    kind = "provider_auth"


class ProviderQuotaError(ProviderError):
    kind = "provider_quota"


class ContentModerationError(ProviderError):
    kind = "content_moderation"


class ProviderBadRequestError(ProviderError):
    kind = "provider_bad_request"


class ProviderResponseError(ProviderError):
    kind = "provider_bad_response"


class ProviderRateLimitError(ProviderError):
    kind = "provider_rate_limited"
    retryable = True


class ProviderUnavailableError(ProviderError):
    kind = "provider_unavailable"
    retryable = True


class ProviderTimeoutError(ProviderError):
    kind = "provider_timeout"
    retryable = True


_SECRETS: set[str] = set()
_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+[A-Za-z0-9._\-]{6,})")


def register_secret(value: str | None) -> None:
    """Remember a key so that `redact` removes it from any text."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


MODERATION_CODES = {"DataInspectionFailed", "data_inspection_failed", "content_filter", "content_policy_violation",
                    "IPInfringementSuspect", "InappropriateContent"}
QUOTA_CODES = {"Arrearage", "insufficient_quota", "QuotaExhausted", "AllocationQuota.FreeTierOnly",
               "billing_hard_limit_reached"}
AUTH_CODES = {"InvalidApiKey", "invalid_api_key", "AccessDenied", "Unauthorized"}


def classify(status: int | None, code: str | None, message: str, provider: str,
             retry_after: float | None = None) -> ProviderError:
    """The error type for an HTTP status and provider error code."""
    text = f"{provider}: {message}" if message else f"{provider}: HTTP {status}"
    args = {"provider": provider, "status": status, "code": code, "retry_after": retry_after}
    code = code or ""
    if code in MODERATION_CODES or "inspection" in code.lower() or "moderation" in message.lower():
        return ContentModerationError(f"{text} (the provider refused the content: rephrase the prompt)", **args)
    if code in QUOTA_CODES or status == 402:
        return ProviderQuotaError(f"{text} (quota or balance exhausted)", **args)
    if status in (401, 403) or code in AUTH_CODES:
        return ProviderAuthError(f"{text} (check the API key)", **args)
    if status == 429 or code in ("Throttling", "Throttling.RateQuota", "rate_limit_exceeded"):
        return ProviderRateLimitError(f"{text} (rate limited)", **args)
    if status is not None and status >= 500:
        return ProviderUnavailableError(f"{text} (server error)", **args)
    if status is not None and 400 <= status < 500:
        return ProviderBadRequestError(text, **args)
    return ProviderResponseError(text, **args)
