"""NodeWeaver's core node pack: pure-Python primitives, string tools, text files, preview and a lazy switch."""

from nodes.core import flow, primitives, strings, text_io

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in (primitives, strings, text_io, flow):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
