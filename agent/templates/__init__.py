"""ComfyUI's official workflow templates as a searchable NodeWeaver library (issue 17)."""

from agent.templates.library import TASKS, TemplateLibrary, TemplateNotConvertible, build_index, load_library
from agent.templates.model import InputFile, ModelFile, Slot, TemplateInfo

__all__ = ["TASKS", "InputFile", "ModelFile", "Slot", "TemplateInfo", "TemplateLibrary", "TemplateNotConvertible",
           "build_index", "load_library"]
