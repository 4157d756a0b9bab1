"""Remote model nodes (LLMs and image APIs): OpenAI-compatible providers and DashScope (Qwen, Wanx)."""

from nodes.api.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
