"""Where a template's editable values live in its API form (node id + input name), so a caller can fill them.

Why: to reuse a template for a new request one sets the prompt, size, length, seed … without reading the
graph. Values linked from a Primitive* node live on that node's `value`, so the slot points there. A prompt's
polarity is where its conditioning goes: the first `positive`/`negative` input reached downstream.
"""

from __future__ import annotations

from typing import Any

from agent.templates.derive import LOADERS, PRIMITIVES, PROMPT_INPUTS, SLOT_INPUTS
from agent.templates.model import Slot

MAX_HOPS = 12


def _consumers(prompt: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Node id → the (node id, input name) pairs its outputs feed."""
    out: dict[str, list[tuple[str, str]]] = {}
    for node_id, node in prompt.items():
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                out.setdefault(value[0], []).append((node_id, name))
    return out


def _polarity(start: str, prompt: dict[str, Any], consumers: dict[str, list[tuple[str, str]]]) -> str | None:
    """"positive" or "negative": the kind of the nearest such input downstream of `start` (positive when both
    are equally near). A ConditioningZeroOut is not followed: it makes a negative out of a positive text."""
    frontier, seen = [start], {start}
    for _ in range(MAX_HOPS):
        hits, following = set(), []
        for node_id in frontier:
            for target, name in consumers.get(node_id, []):
                if name in ("positive", "negative"):
                    hits.add(name)
                elif target not in seen and "ZeroOut" not in str(prompt[target].get("class_type", "")):
                    seen.add(target)
                    following.append(target)
        if hits:
            return "positive" if "positive" in hits else "negative"
        frontier = following
    return None


def _source(prompt: dict[str, Any], node_id: str, name: str, kinds: tuple[type, ...]) -> Slot | None:
    """The slot holding this input's value: the input itself, or the Primitive node it is linked from."""
    value = (prompt[node_id].get("inputs") or {}).get(name)
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] in prompt:
        source = prompt[value[0]]
        if source.get("class_type") in PRIMITIVES:
            inner = (source.get("inputs") or {}).get("value")
            return Slot(node=value[0], input="value", value=inner) if isinstance(inner, kinds) else None
        return None
    if isinstance(value, kinds) and not isinstance(value, bool):
        return Slot(node=node_id, input=name, value=value)
    return None


def _add(slots: dict[str, list[Slot]], key: str, slot: Slot | None) -> None:
    if slot is not None and all((s.node, s.input) != (slot.node, slot.input) for s in slots.get(key, [])):
        slots.setdefault(key, []).append(slot)


def _prompt_slots(prompt: dict[str, Any], slots: dict[str, list[Slot]]) -> None:
    consumers = _consumers(prompt)
    for node_id, node in prompt.items():
        inputs = node.get("inputs") or {}
        class_type = str(node.get("class_type", ""))
        for name in (*PROMPT_INPUTS, "negative_prompt"):
            if name not in inputs or class_type in PRIMITIVES:
                continue
            polarity = "negative" if name == "negative_prompt" else _polarity(node_id, prompt, consumers)
            if polarity is None and (name in ("prompt", "positive_prompt") or "Encode" in class_type):
                polarity = "positive"
            if polarity is not None:
                _add(slots, polarity, _source(prompt, node_id, name, (str,)))


def derive_slots(prompt: dict[str, Any]) -> dict[str, list[Slot]]:
    """Slot name → where it lives: positive, negative, width, height, length, fps, seed, steps, cfg, denoise,
    scale, and the input files (image, mask, video, audio, 3d)."""
    slots: dict[str, list[Slot]] = {}
    _prompt_slots(prompt, slots)
    for node_id, node in prompt.items():
        inputs = node.get("inputs") or {}
        class_type = node.get("class_type", "")
        if class_type in PRIMITIVES:
            continue
        for key, names in SLOT_INPUTS.items():
            for name in names:
                if name in inputs:
                    _add(slots, key, _source(prompt, node_id, name, (int, float)))
        loader = LOADERS.get(class_type)
        if loader and loader[0] in inputs:
            _add(slots, loader[1], _source(prompt, node_id, loader[0], (str,)))
    return slots
