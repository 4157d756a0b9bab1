"""ComfyUI's V3 node schema (`comfy_api.latest.io`), as far as custom packs use it, over NodeWeaver's V1 view.

A V3 node is a `ComfyNode` subclass whose classmethods `define_schema` and `execute` describe and run it. The
registry and engine know V1 classes (INPUT_TYPES, RETURN_TYPES, FUNCTION, VALIDATE_INPUTS, IS_CHANGED,
check_lazy_status), so `ComfyNode` derives all of those from the schema, as ComfyUI's own V1 compatibility
layer does: object_info looks the same as ComfyUI's, and nothing downstream needs to know about V3.
Hidden values (unique_id, prompt, extra_pnginfo ...) arrive as V1 hidden inputs and are handed to the node
as `cls.hidden`, on a per-call clone of the class so concurrent runs never see each other's values.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from runtime.comfy_graph import ExecutionBlocker


def _pruned(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class FolderType(StrEnum):
    input = "input"
    output = "output"
    temp = "temp"


class UploadType(StrEnum):
    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(StrEnum):
    number = "number"
    slider = "slider"


# ---- inputs and outputs -----------------------------------------------------------------------------------
class Input:
    """A socket input; `Parent` (set per type) gives its io_type."""

    Parent: Any = None

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None) -> None:
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.tooltip = tooltip
        self.lazy = lazy
        self.extra_dict = extra_dict or {}

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def get_io_type(self) -> str:
        return self.io_type

    def as_dict(self) -> dict[str, Any]:
        return _pruned({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                        "lazy": self.lazy}) | _pruned(self.extra_dict)


class WidgetInput(Input):
    """An input with a widget (a literal value in the prompt): default, forceInput ..."""

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, default: Any = None,
                 socketless: bool | None = None, widget_type: str | None = None, force_input: bool | None = None,
                 extra_dict: dict | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.default = default
        self.socketless = socketless
        self.widget_type = widget_type
        self.force_input = force_input

    def get_io_type(self) -> str:
        return self.widget_type if self.widget_type is not None else self.io_type

    def as_dict(self) -> dict[str, Any]:
        return super().as_dict() | _pruned({"default": self.default, "socketless": self.socketless,
                                            "widgetType": self.widget_type, "forceInput": self.force_input})


class Output:
    """A node output; display_name becomes the V1 RETURN_NAMES entry."""

    Parent: Any = None

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False) -> None:
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def get_io_type(self) -> str:
        return self.io_type

    def as_dict(self) -> dict[str, Any]:
        return _pruned({"display_name": self.display_name, "tooltip": self.tooltip,
                        "is_output_list": self.is_output_list})


class ComfyTypeI:
    """A type with only an Input class."""

    io_type: str = ""
    Type: Any = Any
    Input = Input


class ComfyTypeIO(ComfyTypeI):
    """A type with Input and Output classes."""

    Output = Output


def comfytype(io_type: str, **_: Any):
    """Bind `io_type` to a type class; its Input/Output classes become its own subclasses (Parent = the type),
    so one type's io_type never leaks into another's sockets."""

    def decorate(cls: type) -> type:
        if not issubclass(cls, ComfyTypeI):
            cls = type(cls.__name__, (cls, ComfyTypeIO), {"__module__": cls.__module__, "__doc__": cls.__doc__})
        cls.io_type = io_type
        for part in ("Input", "Output"):
            base = getattr(cls, part, None)
            if base is not None:
                setattr(cls, part, type(part, (base,), {"Parent": cls, "__qualname__": f"{cls.__name__}.{part}"}))
        return cls

    return decorate


def Custom(io_type: str) -> type[ComfyTypeIO]:  # noqa: N802 - ComfyUI's name
    """A type for a pack's own socket type (ComfyUI's io.Custom)."""

    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        pass

    return CustomComfyType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, default: bool | None = None,
                     label_on: str | None = None, label_off: str | None = None, socketless: bool | None = None,
                     force_input: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.label_on, self.label_off = label_on, label_off

        def as_dict(self) -> dict[str, Any]:
            return super().as_dict() | _pruned({"label_on": self.label_on, "label_off": self.label_off})


class _NumberInput(WidgetInput):
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, default: float | None = None,
                 min: float | None = None, max: float | None = None, step: float | None = None,  # noqa: A002
                 display_mode: NumberDisplay | None = None, socketless: bool | None = None,
                 force_input: bool | None = None, **extra: Any) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
        self.min, self.max, self.step, self.display_mode = min, max, step, display_mode
        self.extra = extra  # control_after_generate (Int), round (Float)

    def as_dict(self) -> dict[str, Any]:
        display = self.display_mode.value if isinstance(self.display_mode, Enum) else self.display_mode
        return super().as_dict() | _pruned({"min": self.min, "max": self.max, "step": self.step, **self.extra,
                                            "display": display})


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int
    Input = _NumberInput


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float
    Input = _NumberInput


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, multiline: bool = False,
                     placeholder: str | None = None, default: str | None = None,
                     dynamic_prompts: bool | None = None, socketless: bool | None = None,
                     force_input: bool | None = None) -> None:
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input)
            self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts

        def as_dict(self) -> dict[str, Any]:
            return super().as_dict() | _pruned({"multiline": self.multiline, "placeholder": self.placeholder,
                                                "dynamicPrompts": self.dynamic_prompts})


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        """A dropdown; V1 sees ("COMBO", {"options": [...]}), as ComfyUI 0.3.64 serves it."""

        def __init__(self, id: str, options: list | type[Enum] | None = None, display_name: str | None = None,
                     optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                     default: Any = None, control_after_generate: bool | None = None,
                     upload: UploadType | None = None, image_folder: FolderType | None = None,
                     remote: Any = None, socketless: bool | None = None) -> None:
            if isinstance(options, type) and issubclass(options, Enum):
                options = [v.value for v in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless)
            self.multiselect = False
            self.options = list(options) if options is not None else []
            self.control_after_generate, self.upload, self.image_folder = control_after_generate, upload, image_folder

        def as_dict(self) -> dict[str, Any]:
            return super().as_dict() | _pruned({
                "multiselect": self.multiselect, "options": self.options,
                "control_after_generate": self.control_after_generate,
                **({self.upload.value: True} if self.upload is not None else {}),
                "image_folder": self.image_folder.value if self.image_folder else None})


class _AnyIO(ComfyTypeIO):
    Type = Any


def _socket_type(name: str, io_type: str) -> type[ComfyTypeIO]:
    return comfytype(io_type=io_type)(type(name, (_AnyIO,), {"__module__": __name__}))


Image = _socket_type("Image", "IMAGE")
Mask = _socket_type("Mask", "MASK")
Latent = _socket_type("Latent", "LATENT")
Conditioning = _socket_type("Conditioning", "CONDITIONING")
Sampler = _socket_type("Sampler", "SAMPLER")
Sigmas = _socket_type("Sigmas", "SIGMAS")
Noise = _socket_type("Noise", "NOISE")
Guider = _socket_type("Guider", "GUIDER")
Clip = _socket_type("Clip", "CLIP")
ControlNet = _socket_type("ControlNet", "CONTROL_NET")
Vae = _socket_type("Vae", "VAE")
Model = _socket_type("Model", "MODEL")
ClipVision = _socket_type("ClipVision", "CLIP_VISION")
ClipVisionOutput = _socket_type("ClipVisionOutput", "CLIP_VISION_OUTPUT")
StyleModel = _socket_type("StyleModel", "STYLE_MODEL")
Gligen = _socket_type("Gligen", "GLIGEN")
UpscaleModel = _socket_type("UpscaleModel", "UPSCALE_MODEL")
Audio = _socket_type("Audio", "AUDIO")
Video = _socket_type("Video", "VIDEO")
SVG = _socket_type("SVG", "SVG")
LoraModel = _socket_type("LoraModel", "LORA_MODEL")
Hooks = _socket_type("Hooks", "HOOKS")
AnyType = _socket_type("AnyType", "*")


class MultiType:
    """An input accepting several types: V1 sees them joined with commas, as ComfyUI's V1 layer does."""

    class Input(Input):
        def __init__(self, id: str | Input, types: list, display_name: str | None = None, optional: bool = False,
                     tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict | None = None) -> None:
            self.widget = id if isinstance(id, Input) else None
            name = id.id if isinstance(id, Input) else id
            super().__init__(name, display_name, optional, tooltip, lazy, extra_dict)
            self.types = [t.io_type for t in types]

        def get_io_type(self) -> str:
            own = [self.widget.get_io_type()] if self.widget is not None else []
            return ",".join(dict.fromkeys(own + self.types))

        def as_dict(self) -> dict[str, Any]:
            return (self.widget.as_dict() if self.widget is not None else {}) | super().as_dict()


# ---- hidden values, schema, output ------------------------------------------------------------------------
class Hidden(StrEnum):
    """Hidden values a node asks for; the V1 view names them by member name, typed by value."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """`cls.hidden` while a node runs: the hidden values it asked for, None for the others."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        for member in Hidden:
            setattr(self, member.name, (values or {}).get(member.value))

    def __getattr__(self, key: str) -> Any:
        return None


@dataclass
class Schema:
    """A V3 node's definition (the fields packs set; ComfyUI's defaults)."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input and output ids must be unique, within and between the two lists (as ComfyUI checks)."""
        inputs = [i.id for i in self.inputs or []]
        outputs = [o.id for o in self.outputs or [] if o.id is not None]
        issues = [f"{what} ids must be unique, but {[k for k, n in Counter(ids).items() if n > 1]} are not."
                  for what, ids in (("Input", inputs), ("Output", outputs)) if len(set(ids)) != len(ids)]
        if set(inputs) & set(outputs):
            issues.append(f"Ids must be unique between inputs and outputs, but {set(inputs) & set(outputs)} are not.")
        if issues:
            raise ValueError(f"node {self.node_id}: " + " ".join(issues))

    def finalize(self) -> Schema:
        """Add the hidden values output and API nodes always get; give unnamed outputs ids."""
        self.inputs, self.outputs, self.hidden = list(self.inputs or []), list(self.outputs or []), \
            list(self.hidden or [])
        wanted = ([Hidden.auth_token_comfy_org, Hidden.api_key_comfy_org] if self.is_api_node else []) + \
            ([Hidden.prompt, Hidden.extra_pnginfo] if self.is_output_node else [])
        self.hidden += [h for h in wanted if h not in self.hidden]
        for index, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{index}_{output.io_type}_"
        return self

    def v1_inputs(self) -> dict[str, dict[str, Any]]:
        """INPUT_TYPES as ComfyUI's V1 layer builds it."""
        sections: dict[str, dict[str, Any]] = {"required": {}}
        for item in self.inputs:
            options = item.as_dict()
            options.pop("optional", None)
            sections.setdefault("optional" if item.optional else "required", {})[item.id] = \
                (item.get_io_type(), options)
        for hidden in self.hidden:
            sections.setdefault("hidden", {})[hidden.name] = (hidden.value,)
        return sections


class NodeOutput:
    """What `execute` returns: output values, and optionally ui, an expansion or a block."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict | None = None,
                 block_execution: str | None = None) -> None:
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple | None:
        return self.args if self.args else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeOutput:
        result = data.get("result", ())
        if isinstance(result, ExecutionBlocker):
            return cls(block_execution=result.message)
        return cls(*tuple(result or ()), ui=data.get("ui"), expand=data.get("expand"))

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


from nodes.comfy_compat.comfy_api.latest._node import ComfyNode  # noqa: E402 - it builds on the classes above

__all__ = ["FolderType", "UploadType", "NumberDisplay", "comfytype", "Custom", "Input", "WidgetInput", "Output",
           "ComfyTypeI", "ComfyTypeIO", "Boolean", "Int", "Float", "String", "Combo", "Image", "Mask", "Latent",
           "Conditioning", "Sampler", "Sigmas", "Noise", "Guider", "Clip", "ControlNet", "Vae", "Model",
           "ClipVision", "ClipVisionOutput", "StyleModel", "Gligen", "UpscaleModel", "Audio", "Video", "SVG",
           "LoraModel", "Hooks", "AnyType", "MultiType", "Hidden", "HiddenHolder", "Schema", "ComfyNode",
           "NodeOutput"]
