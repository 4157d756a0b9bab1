"""LLMChat and DashScopeImageSynthesis: remote model calls as ComfyUI-convention nodes."""

from __future__ import annotations

from typing import Any

from nodes.api.providers import profile_names, resolve_profile

DASHSCOPE_SIZES = ["1024*1024", "768*960", "960*768", "720*1280", "1280*720", "768*1152", "1152*768",
                   "864*1152", "1152*864", "768*768", "512*512", "1440*1440"]
SEED_MAX = 2147483647


class LLMChat:
    DESCRIPTION = ("Text from a large language model: OpenAI-compatible APIs (OpenAI, vLLM, Ollama, DeepSeek, "
                   "DashScope compatible mode) or DashScope (Qwen). Writes, rewrites, summarises, translates, "
                   "expands prompts; with json_output it returns JSON.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    FUNCTION = "chat"
    CATEGORY = "api/llm"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "provider": (profile_names(), {"default": "openai-compatible",
                                           "tooltip": "Where the model runs: a built-in kind or a config profile."}),
            "model": ("STRING", {"default": "gpt-4o-mini", "tooltip": "e.g. gpt-4o-mini, qwen-max, deepseek-chat"}),
            "system_prompt": ("STRING", {"multiline": True, "default": ""}),
            "prompt": ("STRING", {"multiline": True, "default": ""}),
            "temperature": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 2.0, "step": 0.05}),
            "max_tokens": ("INT", {"default": 1024, "min": 1, "max": 32768}),
            "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
            "json_output": ("BOOLEAN", {"default": False, "tooltip": "Ask for JSON and check the answer parses."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, model: Any = None) -> bool | str:
        if isinstance(model, str) and not model.strip():
            return "model must name a model, e.g. gpt-4o-mini or qwen-max"
        return True

    def chat(self, provider: str, model: str, system_prompt: str, prompt: str, temperature: float = 0.7,
             max_tokens: int = 1024, seed: int = 0, json_output: bool = False) -> tuple[str]:
        from nodes.api.clients import dashscope_chat, openai_chat, parse_json_output

        profile = resolve_profile(provider)
        request = {"model": model.strip(), "system_prompt": system_prompt or "", "prompt": prompt or "",
                   "temperature": temperature, "max_tokens": max_tokens, "seed": seed, "json_output": json_output}
        if not request["prompt"].strip():
            raise ValueError("LLMChat needs a prompt")
        text = dashscope_chat(profile, request) if profile.kind == "dashscope" else openai_chat(profile, request)
        return (parse_json_output(text) if json_output else text,)


class DashScopeImageSynthesis:
    DESCRIPTION = ("Text-to-image with DashScope Wanx (通义万相): submits an asynchronous task, waits for it and "
                   "downloads the images. Sizes are written width*height.")
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "url")
    FUNCTION = "generate"
    CATEGORY = "api/image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": ("STRING", {"default": "wanx2-t2i-lite"}),
            "prompt": ("STRING", {"multiline": True, "default": ""}),
            "negative_prompt": ("STRING", {"multiline": True, "default": ""}),
            "size": (DASHSCOPE_SIZES, {"default": "1024*1024"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
            "n": ("INT", {"default": 1, "min": 1, "max": 4}),
        }, "optional": {"provider": (["dashscope"] + [p for p in profile_names() if p not in (
            "openai-compatible", "dashscope")], {"default": "dashscope"})}}

    def generate(self, model: str, prompt: str, negative_prompt: str = "", size: str = "1024*1024", seed: int = 0,
                 n: int = 1, provider: str = "dashscope") -> tuple[Any, str]:
        from nodes.api.clients import dashscope_image_task, download
        from nodes.api.errors import ProviderConfigError

        profile = resolve_profile(provider)
        if profile.kind != "dashscope":
            raise ProviderConfigError(f"provider {provider!r} is not a DashScope profile", provider=provider)
        if not prompt.strip():
            raise ValueError("DashScopeImageSynthesis needs a prompt")
        params: dict[str, Any] = {"model": model, "prompt": prompt, "size": size, "n": n, "seed": seed}
        if negative_prompt.strip():
            params["negative_prompt"] = negative_prompt
        urls = dashscope_image_task(profile, params)
        images = [_decode(download(url, profile)) for url in urls]
        return (_stack(images), "\n".join(urls))


def _decode(data: bytes):
    import io

    import numpy as np
    from PIL import Image

    from nodes.diffusion.models import torch_or_error

    torch = torch_or_error()
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    except Exception as exc:
        from nodes.api.errors import ProviderResponseError

        raise ProviderResponseError(f"the downloaded file is not an image ({exc})") from exc
    return torch.from_numpy(array)


def _stack(images: list):
    from nodes.diffusion.models import torch_or_error

    torch = torch_or_error()
    first = images[0].shape
    same = [i for i in images if i.shape == first]
    return torch.stack(same)


NODE_CLASS_MAPPINGS = {"LLMChat": LLMChat, "DashScopeImageSynthesis": DashScopeImageSynthesis}
NODE_DISPLAY_NAME_MAPPINGS = {"LLMChat": "LLM Chat", "DashScopeImageSynthesis": "DashScope Wanx Text to Image"}
