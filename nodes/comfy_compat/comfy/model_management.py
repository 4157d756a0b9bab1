"""ComfyUI's `comfy.model_management`, the parts packs use: devices, cache release and interruption checks."""

from __future__ import annotations

from typing import Any

from runtime import progress

InterruptProcessingException = progress.InterruptedExecution


def _device_name() -> str:
    from runtime.models import best_device
    from runtime.settings import current

    return current().engine.device or best_device()


def get_torch_device() -> Any:
    """The device models run on: the [engine] device setting, else the best available."""
    import torch

    return torch.device(_device_name())


def intermediate_device() -> Any:
    """Where nodes leave tensors between steps: the CPU, as in ComfyUI."""
    import torch

    return torch.device("cpu")


def unet_offload_device() -> Any:
    return intermediate_device()


def vae_offload_device() -> Any:
    return intermediate_device()


def text_encoder_device() -> Any:
    return get_torch_device()


def is_device_mps(device: Any) -> bool:
    return getattr(device, "type", str(device)) == "mps"


def soft_empty_cache(force: bool = False) -> None:
    """Give cached GPU memory back to the driver (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def processing_interrupted() -> bool:
    """True when the user interrupted the run this node belongs to."""
    ctx = progress.current_node.get()
    return ctx is not None and bool(ctx.interrupted())


def throw_exception_if_processing_interrupted() -> None:
    """Raise InterruptProcessingException if the user interrupted; long loops call this between steps."""
    progress.check_interrupted()


__all__ = ["InterruptProcessingException", "get_torch_device", "intermediate_device", "is_device_mps",
           "processing_interrupted", "soft_empty_cache", "text_encoder_device",
           "throw_exception_if_processing_interrupted", "unet_offload_device", "vae_offload_device"]
