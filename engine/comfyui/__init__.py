"""Running on remote ComfyUI servers: the protocol client and the Backend built on it."""

from engine.comfyui.backend import ComfyUIBackend
from engine.comfyui.client import ComfyUIClient, EventStream
from engine.comfyui.errors import BackendUnavailable, RemoteError, RemoteValidationError

__all__ = ["BackendUnavailable", "ComfyUIBackend", "ComfyUIClient", "EventStream", "RemoteError",
           "RemoteValidationError"]
