"""`io.ComfyNode`: a V3 node class that the registry and engine see as a V1 class.

The class-level V1 attributes (RETURN_TYPES, FUNCTION, VALIDATE_INPUTS ...) are properties of the metaclass,
computed from the schema on first use, because `define_schema` may only work once the pack has finished
importing. INPUT_TYPES calls `define_schema` every time, as ComfyUI does, so choice lists stay current.
"""

from __future__ import annotations

import inspect
from abc import ABCMeta
from typing import Any

from nodes.comfy_compat.comfy_api.latest._io import Hidden, HiddenHolder, NodeOutput, Schema
from runtime.comfy_graph import ExecutionBlocker

_HIDDEN_BY_NAME = {member.name: member.value for member in Hidden}


class _V1View(ABCMeta):
    """Metaclass of ComfyNode: the V1 class attributes, derived from the node's schema."""

    def _nw_schema(cls) -> Schema:
        origin = cls.__dict__.get("_nw_origin", cls)
        schema = origin.__dict__.get("_nw_schema_cache")
        if schema is None:
            schema = origin.GET_SCHEMA()
            type.__setattr__(origin, "_nw_schema_cache", schema)
        return schema

    def _overrides(cls, name: str) -> bool:
        return getattr(cls, name).__func__ is not getattr(ComfyNode, name).__func__

    RETURN_TYPES = property(lambda cls: tuple(o.get_io_type() for o in cls._nw_schema().outputs))
    RETURN_NAMES = property(lambda cls: tuple(o.display_name or o.get_io_type() for o in cls._nw_schema().outputs))
    OUTPUT_IS_LIST = property(lambda cls: tuple(bool(o.is_output_list) for o in cls._nw_schema().outputs))
    OUTPUT_TOOLTIPS = property(lambda cls: tuple(o.tooltip for o in cls._nw_schema().outputs))
    OUTPUT_NODE = property(lambda cls: cls._nw_schema().is_output_node)
    INPUT_IS_LIST = property(lambda cls: cls._nw_schema().is_input_list)
    NOT_IDEMPOTENT = property(lambda cls: cls._nw_schema().not_idempotent)
    CATEGORY = property(lambda cls: cls._nw_schema().category)
    DESCRIPTION = property(lambda cls: cls._nw_schema().description)
    DEPRECATED = property(lambda cls: cls._nw_schema().is_deprecated)
    EXPERIMENTAL = property(lambda cls: cls._nw_schema().is_experimental)
    API_NODE = property(lambda cls: cls._nw_schema().is_api_node)

    @property
    def FUNCTION(cls) -> str:  # noqa: N802 - the V1 name
        return "EXECUTE_NORMALIZED_ASYNC" if inspect.iscoroutinefunction(cls.execute) else "EXECUTE_NORMALIZED"

    @property
    def VALIDATE_INPUTS(cls) -> Any:  # noqa: N802 - the V1 name
        """The node's own validate_inputs (the validator reads which inputs it takes), or None."""
        return cls.validate_inputs if cls._overrides("validate_inputs") else None

    @property
    def IS_CHANGED(cls) -> Any:  # noqa: N802 - the V1 name
        return cls.fingerprint_inputs if cls._overrides("fingerprint_inputs") else None


class ComfyNode(metaclass=_V1View):
    """Base of V3 nodes: override define_schema and execute (classmethods), optionally validate_inputs,
    fingerprint_inputs and check_lazy_status."""

    hidden: HiddenHolder = HiddenHolder()

    def __init__(self) -> None:
        # the engine calls check_lazy_status on an instance with V1 arguments (hidden values included):
        # this instance attribute takes them and calls the node's own classmethod the V3 way
        self.check_lazy_status = self._v1_check_lazy_status

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"V3 node class {cls.__name__} defines no define_schema")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"V3 node class {cls.__name__} defines no execute")

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        return True

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        return None

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        """ComfyUI's default: every lazy input not evaluated yet."""
        return [name for name, value in kwargs.items() if value is None]

    # ---- the V1 view ----------------------------------------------------------------------------------
    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802 - ComfyUI's name
        """The finalized, validated schema (ComfyUI's loader asks for it to learn the node id)."""
        if "define_schema" not in _own_names(cls) or "execute" not in _own_names(cls):
            raise TypeError(f"V3 node class {cls.__name__} must define both define_schema and execute")
        schema = cls.define_schema()
        if not isinstance(schema, Schema):
            raise TypeError(f"{cls.__name__}.define_schema returned {type(schema).__name__}, not io.Schema")
        schema.finalize()
        schema.validate()
        return schema

    @classmethod
    def INPUT_TYPES(cls, include_hidden: bool = True) -> dict[str, dict[str, Any]]:  # noqa: N802
        sections = cls.GET_SCHEMA().v1_inputs()
        if not include_hidden:
            sections.pop("hidden", None)
        return sections

    @classmethod
    def EXECUTE_NORMALIZED(cls, **kwargs: Any) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        clone, inputs = cls._nw_prepare(kwargs)
        return cls._nw_v1_result(clone.execute(**inputs))

    @classmethod
    async def EXECUTE_NORMALIZED_ASYNC(cls, **kwargs: Any) -> dict[str, Any]:  # noqa: N802 - ComfyUI's name
        clone, inputs = cls._nw_prepare(kwargs)
        return cls._nw_v1_result(await clone.execute(**inputs))

    def _v1_check_lazy_status(self, **kwargs: Any) -> Any:
        clone, inputs = type(self)._nw_prepare(kwargs)
        return clone.check_lazy_status(**inputs)

    @classmethod
    def _nw_prepare(cls, kwargs: dict[str, Any]) -> tuple[type[ComfyNode], dict[str, Any]]:
        """Split V1 arguments into the node's inputs and its hidden values; the hidden values go on a
        clone of the class (ComfyUI's PREPARE_CLASS_CLONE), so concurrent calls never share them."""
        schema = cls._nw_schema()
        ids = {i.id for i in schema.inputs}
        hidden = {h.name for h in schema.hidden}
        inputs = {k: v for k, v in kwargs.items() if k in ids}
        values = {_HIDDEN_BY_NAME[k]: v for k, v in kwargs.items() if k in hidden and k not in ids}
        origin = cls.__dict__.get("_nw_origin", cls)
        clone = type(origin)(origin.__name__, (origin,), {"hidden": HiddenHolder(values), "_nw_origin": origin,
                                                          "__module__": origin.__module__})
        return clone, inputs

    @classmethod
    def _nw_v1_result(cls, returned: Any) -> dict[str, Any]:
        """execute's return value (NodeOutput, tuple, dict, blocker or None) as a V1 result dict."""
        if returned is None:
            returned = NodeOutput()
        elif isinstance(returned, tuple):
            returned = NodeOutput(*returned)
        elif isinstance(returned, dict):
            returned = NodeOutput.from_dict(returned)
        elif isinstance(returned, ExecutionBlocker):
            returned = NodeOutput(block_execution=returned.message)
        elif not isinstance(returned, NodeOutput):
            raise TypeError(f"{cls.__name__}.execute returned {type(returned).__name__}; expected io.NodeOutput")
        if returned.expand is not None and not cls._nw_schema().enable_expand:
            raise TypeError(f"node {cls.__name__} returned an expansion but its schema does not set "
                            "enable_expand=True")
        result: dict[str, Any] = {"result": (ExecutionBlocker(returned.block_execution)
                                             if returned.block_execution is not None else returned.args)}
        if returned.ui is not None:
            result["ui"] = returned.ui.as_dict() if hasattr(returned.ui, "as_dict") else dict(returned.ui)
        if returned.expand is not None:
            result["expand"] = returned.expand
        return result


def _own_names(cls: type) -> set[str]:
    """Names defined by the node's own classes (not by ComfyNode itself)."""
    return {name for klass in cls.__mro__ if klass not in (ComfyNode, object) for name in vars(klass)}
