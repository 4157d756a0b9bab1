"""NodeWeaver: words in, ComfyUI-compatible workflows out, validated and run."""

__version__ = "0.1.0"
