"""What changed between two API-format workflows, as data and as readable lines.

An edit by words ("add a LoRA", "把采样步数改成30") has to show the user what it did: which nodes were added or
removed, which widget values changed and which links were moved. Pure: no registry, no I/O, so it can diff any two
workflows, valid or not.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

VALUE_WIDTH = 60  # a long prompt is cut to this many characters in a line; the data keeps it whole


class NodeEntry(BaseModel):
    """A node that is only in one of the two workflows, with its literal (widget) values."""

    id: str
    class_type: str
    values: dict[str, Any] = Field(default_factory=dict)


class InputChange(BaseModel):
    """One input of a node in both workflows whose value or link differs (None: the input is absent)."""

    id: str
    class_type: str
    input: str
    before: Any = None
    after: Any = None


class WorkflowDiff(BaseModel):
    """Nodes added and removed, widget values changed, and links moved (`relinked`)."""

    added: list[NodeEntry] = Field(default_factory=list)
    removed: list[NodeEntry] = Field(default_factory=list)
    changed: list[InputChange] = Field(default_factory=list)
    relinked: list[InputChange] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.relinked)

    def lines(self) -> list[str]:
        """One line per difference: "+ 12 LoraLoader (lora_name=…)", "~ 3 KSampler.steps: 20 → 30",
        "- 7 CLIPTextEncode", "> 3 KSampler.model: 4.0 → 12.0" (a link moved)."""
        out = [f"- {n.id} {n.class_type}" for n in self.removed]
        for n in self.added:
            shown = ", ".join(f"{k}={_show(v)}" for k, v in n.values.items())
            out.append(f"+ {n.id} {n.class_type}" + (f" ({shown})" if shown else ""))
        out += [f"~ {c.id} {c.class_type}.{c.input}: {_show(c.before)} → {_show(c.after)}" for c in self.changed]
        out += [f"> {c.id} {c.class_type}.{c.input}: {_show(c.before)} → {_show(c.after)}" for c in self.relinked]
        return out

    def text(self) -> str:
        return "\n".join(self.lines()) if not self.empty else "(no changes)"


def is_link(value: Any) -> bool:
    """An API-format link: [source node id, output slot]."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if is_link(value):
        return f"{value[0]}.{value[1]}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 1] + "…"


def _node(workflow: dict[str, Any], node_id: str) -> tuple[str, dict[str, Any]]:
    entry = workflow.get(node_id)
    if not isinstance(entry, dict):
        return "?", {}
    inputs = entry.get("inputs")
    return str(entry.get("class_type", "?")), inputs if isinstance(inputs, dict) else {}


def _entry(workflow: dict[str, Any], node_id: str) -> NodeEntry:
    class_type, inputs = _node(workflow, node_id)
    return NodeEntry(id=node_id, class_type=class_type,
                     values={k: v for k, v in inputs.items() if not is_link(v)})


def _input_changes(node_id: str, before: dict[str, Any], after: dict[str, Any]) -> tuple[list, list]:
    """The changed values and the moved links of one node present in both workflows."""
    class_b, inputs_b = _node(before, node_id)
    class_a, inputs_a = _node(after, node_id)
    changed: list[InputChange] = []
    relinked: list[InputChange] = []
    if class_a != class_b:
        changed.append(InputChange(id=node_id, class_type=class_a, input="class_type", before=class_b,
                                   after=class_a))
    for name in list(inputs_b) + [k for k in inputs_a if k not in inputs_b]:
        old, new = inputs_b.get(name), inputs_a.get(name)
        if old == new and type(old) is type(new):
            continue
        change = InputChange(id=node_id, class_type=class_a, input=name, before=old, after=new)
        (relinked if is_link(old) or is_link(new) else changed).append(change)
    return changed, relinked


def diff_workflows(before: dict[str, Any], after: dict[str, Any]) -> WorkflowDiff:
    """The differences that turn `before` into `after`, nodes matched by id."""
    diff = WorkflowDiff(removed=[_entry(before, i) for i in before if i not in after],
                        added=[_entry(after, i) for i in after if i not in before])
    for node_id in (i for i in before if i in after):
        changed, relinked = _input_changes(node_id, before, after)
        diff.changed += changed
        diff.relinked += relinked
    return diff
