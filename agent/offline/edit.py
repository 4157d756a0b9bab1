"""Editing an existing workflow by words, offline, in Chinese and English.

"add a LoRA", "make it 4 images", "switch to SDXL", "then upscale it 2x", "把采样步数改成30", "去掉反向提示词": the
request is split into clauses, each clause is read for the operations it states, and the operations change the
given workflow in place of planning a new one. Untouched nodes keep their ids, new nodes get fresh ids, and the
result carries a diff. A clause no operation understands is reported, never dropped; a missing choice (which
LoRA, which checkpoint) becomes a question with the installed choices.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.offline.compose import IMAGE_EXT, Question
from agent.offline.extract import CN_DIGITS, NUM, Facts, decimal, extract, number
from agent.offline.fragments import LORA_EXT, LORA_WORDS
from compiler import validate
from compiler.diff import WorkflowDiff, diff_workflows, is_link
from compiler.errors import WorkflowError, WorkflowFormatError
from compiler.formats import load_workflow, to_api_workflow
from nodes.registry import NodeRegistry
from nodes.spec import NodeSpec
from runtime.errors import BadRequest

# ---- words ------------------------------------------------------------------------------------------------
# Between a setting's name and its value: "steps to 30", "cfg: 5", "步数改成30", "种子设为42".
CONNECT = r"\s*+(?:(?:to|=|:|：|at|of|is|改成|改为|设为|设成|设置为|设置成|调到|调成|调为|调整为|换成|变成|为|到)\s*+)?"
SEPARATORS = (r"\s*(?:[,，;；。!！]|\.(?=\s|$)|\band\s+then\b|\band\b|\bthen\b|\balso\b|然后|接着|并且|之后|"
              r"再(?=把|将|加|放大|用|改|换|去))\s*")
# "add people and boats to the negative prompt": the list between the verb and the prompt is one clause
ADD_SPAN = (r"\b(?:add|append|include|put)\s+(?:(?!\b(?:add|append|include|put|then|also|lora)\b)[^.;。；!！\n]){1,300}?"
            r"\s(?:to|in|into|as)\s+(?:the\s+)?(?:(?:positive|negative|main|video|image)\s+)?(?:prompt|negatives?)\b")
QUOTE_SPAN = r"[“\"「『‘][^”\"」』’]*[”\"」』’]|(?<![A-Za-z])'[^']*'(?![A-Za-z])"
SAMPLER_ALIASES = {"euler a": "euler_ancestral", "euler ancestral": "euler_ancestral", "dpm++ 2m sde": "dpmpp_2m_sde",
                   "dpm++ 2m": "dpmpp_2m", "dpm++ sde": "dpmpp_sde", "dpm++ 3m sde": "dpmpp_3m_sde",
                   "dpm++ 2s a": "dpmpp_2s_ancestral", "unipc": "uni_pc", "uni pc": "uni_pc"}
EN_COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
             "ten": 10, "a couple of": 2}
REMOVE_WORDS = ("remove", "delete", "drop", "without", "get rid of", "bypass", "去掉", "删除", "删掉", "移除",
                "不要", "不用", "去除", "绕过", "跳过")
SWITCH_WORDS = ("switch", "change", "replace", "swap", "use", "换", "改", "切换", "用")
NEGATIVE_ZH = r"(?:反向提示词|负面提示词|负向提示词|反向词|负面词|反面提示词|负提示词)"
FAMILIES = {"sdxl": ("xl",), "flux": ("flux",), "sd3": ("sd3",), "sd15": ("v1-5", "v1_5", "sd15", "sd1.5", "1.5",
                                                                           "sd_1", "1-5")}
FAMILY_WORDS = [(r"sd\s*xl|sdxl|\bxl\b", "sdxl"), (r"flux", "flux"), (r"sd\s*3(?:\.5)?\b", "sd3"),
                (r"sd\s*1\.?5|sd15|stable diffusion 1\.5", "sd15")]
LARGE_FAMILIES = ("sdxl", "flux", "sd3")


# ---- results ----------------------------------------------------------------------------------------------
@dataclass
class Change:
    """One operation applied: the capability it used (`kind`: "sampling", "size", "count", "length", "prompt",
    "negative", "lora", "checkpoint", "upscale", "hires", "save", "input_image", "remove_node"), in words, and
    the node ids it added or touched."""

    kind: str
    what: str
    nodes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "what": self.what, "nodes": self.nodes}


@dataclass
class NotCovered:
    """A clause understood but impossible here (no node in this catalog provides it, or this workflow gives it
    nothing to act on): the workflow is left as it was for this clause, and the result is partial."""

    kind: str
    what: str
    reason: str
    suggestion: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "what": self.what, "reason": self.reason, "suggestion": self.suggestion}


@dataclass
class EditResult:
    """The edited workflow (the input unchanged when a question is asked), its diff, and what was not done."""

    workflow: dict[str, Any]
    diff: WorkflowDiff
    summary: str
    changes: list[Change] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    not_covered: list[NotCovered] = field(default_factory=list)
    question: Question | None = None
    notes: list[str] = field(default_factory=list)
    valid: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    source_format: str = "api"

    def as_dict(self) -> dict[str, Any]:
        question = None if self.question is None else {"text": self.question.text, "choices": self.question.choices,
                                                       "slot": self.question.slot}
        return {"workflow": self.workflow, "diff": self.diff.model_dump(), "diff_lines": self.diff.lines(),
                "summary": self.summary, "changes": [c.as_dict() for c in self.changes],
                "not_understood": self.not_understood, "not_covered": [n.as_dict() for n in self.not_covered],
                "question": question, "notes": self.notes,
                "valid": self.valid, "errors": self.errors, "source_format": self.source_format}


class NeedsAnswer(Exception):
    """An operation cannot go on without a choice from the user."""

    def __init__(self, question: Question) -> None:
        super().__init__(question.text)
        self.question = question


class CannotApply(Exception):
    """An operation was understood but cannot be done here: this workflow gives it nothing to act on, or no
    installed node provides it (the reason says why, the suggestion what would)."""

    def __init__(self, reason: str, *, kind: str = "", suggestion: str = "") -> None:
        super().__init__(reason)
        self.reason, self.kind, self.suggestion = reason, kind, suggestion


# ---- the workflow as a graph ------------------------------------------------------------------------------
class Graph:
    """An API-format workflow with the lookups edits need: consumers of an output, output types, fresh ids."""

    def __init__(self, workflow: dict[str, Any], registry: NodeRegistry) -> None:
        self.wf = workflow
        self.registry = registry
        numeric = [int(i) for i in workflow if str(i).isdigit()]
        self._next = max(numeric, default=0) + 1
        self._specs: dict[str, NodeSpec | None] = {}  # a spec is rebuilt on each lookup (model lists are read)

    def add(self, class_type: str, **inputs: Any) -> str:
        while str(self._next) in self.wf:
            self._next += 1
        node_id = str(self._next)
        self._next += 1
        self.wf[node_id] = {"class_type": class_type, "inputs": dict(inputs)}
        return node_id

    def cls(self, node_id: str) -> str:
        return str(self.wf[node_id].get("class_type", ""))

    def inputs(self, node_id: str) -> dict[str, Any]:
        return self.wf[node_id].setdefault("inputs", {})

    def of_class(self, *classes: str) -> list[str]:
        return [i for i in self.wf if self.cls(i) in classes]

    def with_input(self, name: str, *, literal: bool = True) -> list[str]:
        return [i for i in self.wf if name in self.inputs(i) and is_link(self.inputs(i)[name]) != literal]

    def spec(self, node_id: str) -> NodeSpec | None:
        name = self.cls(node_id)
        if name not in self._specs:
            self._specs[name] = self.registry.spec(name) if name in self.registry else None
        return self._specs[name]

    def output_types(self, node_id: str) -> list[str]:
        spec = self.spec(node_id)
        return [o.type for o in spec.outputs] if spec else []

    def link_type(self, link: list) -> str:
        types = self.output_types(link[0]) if link[0] in self.wf else []
        return types[link[1]] if link[1] < len(types) else ""

    def is_output(self, node_id: str) -> bool:
        spec = self.spec(node_id)
        return bool(spec and spec.output_node)

    def consumers(self, source: str, slot: int | None = None) -> list[tuple[str, str]]:
        """(node id, input name) of every input linked to `source` (to its output `slot` when given)."""
        return [(i, name) for i in self.wf for name, v in self.inputs(i).items()
                if is_link(v) and v[0] == source and (slot is None or v[1] == slot)]

    def rewire(self, old: list, new: list, *, skip: set[str] = frozenset()) -> list[str]:
        moved = []
        for node_id, name in self.consumers(old[0], old[1]):
            if node_id not in skip:
                self.inputs(node_id)[name] = list(new)
                moved.append(node_id)
        return moved

    def remove(self, node_id: str) -> None:
        self.wf.pop(node_id, None)

    def prune_orphans(self, candidates: list[str]) -> list[str]:
        """Remove loaders and helpers an edit left with no consumer (no output needs them any more)."""
        removed: list[str] = []
        pending = list(candidates)
        while pending:
            node_id = pending.pop()
            if node_id not in self.wf or self.is_output(node_id) or self.consumers(node_id):
                continue
            sources = [v[0] for v in self.inputs(node_id).values() if is_link(v)]
            self.remove(node_id)
            removed.append(node_id)
            pending += sources
        return removed

    def upstream(self, link: Any, want: Callable[[str], bool]) -> str | None:
        """The nearest node upstream of `link` (breadth first) that `want` accepts."""
        seen: set[str] = set()
        queue = [link[0]] if is_link(link) else []
        while queue:
            node_id = queue.pop(0)
            if node_id in seen or node_id not in self.wf:
                continue
            seen.add(node_id)
            if want(node_id):
                return node_id
            queue += [v[0] for v in self.inputs(node_id).values() if is_link(v)]
        return None


# ---- the edit session -------------------------------------------------------------------------------------
@dataclass
class Session:
    graph: Graph
    checkpoints: list[str]
    loras: list[str]
    inputs: list[str]
    upscale_models: list[str]
    answers: dict[str, str]
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # an unquoted prompt later clauses may extend: (node ids, what was done, the text given so far)
    prompt_tail: tuple[list[str], str, str] | None = None
    # the LoRAs the previous clause added or changed: "加上水彩LoRA，强度0.6" gives the strength a clause later
    last_loras: list[str] = field(default_factory=list)

    def facts(self, clause: str) -> Facts:
        return extract(clause, checkpoints=self.checkpoints, loras=self.loras, inputs=self.inputs)

    def did(self, kind: str, what: str, nodes: list[str]) -> None:
        self.changes.append(Change(kind=kind, what=what, nodes=sorted(set(nodes), key=_id_order)))


def _id_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def _has(text: str, *words: str) -> bool:
    lowered = text.lower()
    return any(w in lowered for w in words)


def _unquote(text: str) -> str:
    return text.strip().strip("'\"“”‘’「」『』 ").strip()


# ---- sampling values, size, count -------------------------------------------------------------------------
def _search(patterns: list[str], text: str) -> re.Match | None:
    for pattern in patterns:
        if m := re.search(pattern, text, re.IGNORECASE):
            return m
    return None


def _sampling_values(clause: str, facts: Facts) -> dict[str, Any]:
    """The sampling settings a clause states, keyed by the KSampler input they set."""
    values: dict[str, Any] = {}
    if m := _search([r"(?:sampling\s+)?\bsteps?" + CONNECT + r"(\d+)", r"(?:采样)?步数" + CONNECT + r"(\d+)",
                     r"(?<!\d)(\d+)\s*(?:steps?\b|步)"], clause):
        values["steps"] = number(m.group(1))
    if m := _search([r"cfg(?:\s*scale)?" + CONNECT + NUM, r"(?:引导系数|提示词相关性|引导强度)" + CONNECT + NUM], clause):
        values["cfg"] = decimal(m.group(1))
    if m := _search([r"\bseed" + CONNECT + r"(\d+)", r"种子" + CONNECT + r"(\d+)"], clause):
        values["seed"] = number(m.group(1))
    if m := _search([r"(?:denoise|denoising(?:\s+strength)?|重绘幅度|重绘强度|去噪强度|降噪强度)" + CONNECT + NUM], clause):
        values["denoise"] = decimal(m.group(1))
    lowered = clause.lower()
    alias = next((v for k, v in sorted(SAMPLER_ALIASES.items(), key=lambda kv: -len(kv[0]))
                  if re.search(rf"(?<![a-z_]){re.escape(k)}(?![a-z_+])", lowered)), None)
    if alias or facts.sampler:
        values["sampler_name"] = alias or facts.sampler
    if facts.scheduler:
        values["scheduler"] = facts.scheduler
    return {k: v for k, v in values.items() if v is not None}


def apply_sampling(s: Session, clause: str, facts: Facts) -> bool:
    values = _sampling_values(clause, facts)
    if not values:
        return False
    g = s.graph
    for name, value in values.items():
        targets = g.with_input(name) or (g.with_input("noise_seed") if name == "seed" else [])
        key = name if g.with_input(name) or name != "seed" else "noise_seed"
        if name == "denoise":  # in an img2img or hires chain only the samplers of an encoded latent redraw
            redraw = [i for i in targets if not _from_empty_latent(g, i)]
            targets = redraw or targets
        if not targets:
            raise CannotApply(f"no node of this workflow takes {name}")
        for node_id in targets:
            g.inputs(node_id)[key] = value
        s.did("sampling", f"{key} = {value}", targets)
    return True


def _from_empty_latent(g: Graph, sampler: str) -> bool:
    latent = g.inputs(sampler).get("latent_image")
    return is_link(latent) and latent[0] in g.wf and g.cls(latent[0]).startswith("Empty")


def _latent_makers(g: Graph) -> list[str]:
    """Nodes that make an empty latent of a size (EmptyLatentImage, EmptySD3LatentImage, video latents)."""
    return [i for i in g.wf if "LATENT" in g.output_types(i) and {"width", "height"} <= set(g.inputs(i))
            and not any(is_link(v) for v in g.inputs(i).values())]


def _size_of(g: Graph) -> tuple[int, int] | None:
    for node_id in _latent_makers(g):
        w, h = g.inputs(node_id)["width"], g.inputs(node_id)["height"]
        if isinstance(w, int) and isinstance(h, int):
            return w, h
    return None


def _orientation(clause: str, current: tuple[int, int] | None) -> tuple[int, int] | None:
    """'portrait' / '改成竖版' / 'square': the current size turned, its long side kept."""
    w, h = current or (1024, 1024)
    long, short = max(w, h), min(w, h)
    if long == short:
        short = max(64, round(long * 0.75 / 64) * 64)
    if _has(clause, "竖版", "竖图", "竖屏", "portrait", "vertical", "tall"):
        return short, long
    if _has(clause, "横版", "横图", "横屏", "landscape", "horizontal", "wide"):
        return long, short
    if _has(clause, "square", "方图", "正方形", "方形"):
        return long, long
    return None


def apply_size(s: Session, clause: str, facts: Facts) -> bool:
    g = s.graph
    if facts.width and facts.height and re.search(r"\d{2,4}\s*[x×*]\s*\d{2,4}", clause):
        size = (facts.width, facts.height)
    elif not (size := _orientation(clause, _size_of(g))):
        return False
    set_size(s, *size)
    return True


def set_size(s: Session, width: int, height: int) -> None:
    g = s.graph
    makers = _latent_makers(g)
    for node_id in makers:
        g.inputs(node_id).update(width=width, height=height)
    if makers:
        s.did("size", f"size = {width}x{height}", makers)
        return
    encoders = g.of_class("VAEEncode")
    if not encoders:
        raise CannotApply("this workflow has no latent size to change")
    added = []
    for enc in encoders:  # img2img: scale the input picture before it is encoded
        pixels = g.inputs(enc).get("pixels")
        scale = g.add("ImageScale", image=pixels, upscale_method="lanczos", width=width, height=height, crop="center")
        g.inputs(enc)["pixels"] = [scale, 0]
        added.append(scale)
    s.did("size", f"scale the input image to {width}x{height}", added + encoders)


def _count(clause: str, facts: Facts) -> int | None:
    if facts.batch:
        return facts.batch
    words = "|".join(sorted(EN_COUNTS, key=len, reverse=True))
    if m := re.search(rf"\b({words})\s+(?:different\s+)?(?:images|pictures|photos|variations|versions|videos)\b",
                      clause, re.IGNORECASE):
        return EN_COUNTS[m.group(1).lower()]
    if m := re.search(r"(?<!\d)(\d+|[" + "".join(CN_DIGITS) + r"])\s*(?:个视频|段视频|个结果)", clause):
        return number(m.group(1)) if m.group(1).isdigit() else CN_DIGITS[m.group(1)]
    return None


def apply_count(s: Session, clause: str, facts: Facts) -> bool:
    count = _count(clause, facts)
    if not count:
        return False
    g = s.graph
    makers = [i for i in _latent_makers(g) if "batch_size" in g.inputs(i)]
    for node_id in makers:
        g.inputs(node_id)["batch_size"] = count
    if makers:
        s.did("count", f"batch_size = {count}", makers)
        return True
    encoders = g.of_class("VAEEncode")
    if not encoders:
        raise CannotApply("this workflow has no batch size to change")
    added = []
    for enc in encoders:  # img2img: repeat the encoded latent
        repeat = g.add("RepeatLatentBatch", samples=[enc, 0], amount=count)
        g.rewire([enc, 0], [repeat, 0], skip={repeat})
        added.append(repeat)
    s.did("count", f"repeat the encoded latent {count} times", added)
    return True


def apply_frames(s: Session, clause: str, facts: Facts) -> bool:
    m = re.search(r"(?<!\d)(\d+)\s*(?:frames?\b|帧)", clause, re.IGNORECASE)
    g = s.graph
    makers = [i for i in _latent_makers(g) if "length" in g.inputs(i)]
    if not m or not makers:
        return False
    frames = number(m.group(1)) or 1
    length = max(1, (frames - 1) // 4 * 4 + 1)  # video latents take 4k+1 frames
    if length != frames:
        s.notes.append(f"{frames} frames rounded to {length} (video latents take 4k+1 frames)")
    for node_id in makers:
        g.inputs(node_id)["length"] = length
    s.did("length", f"length = {length} frames", makers)
    return True


# ---- prompts ----------------------------------------------------------------------------------------------
PROMPT_KIND = r"(?:(?:positive|main|video|image|picture|text|subject)\s+)?"
PROMPT_SET = [r"(?:change|set|replace|make|update|switch)\s+(?:the\s+|its\s+)?" + PROMPT_KIND
              + r"prompt\s+(?:to|into|with|as|for)\s+(.+)",
              r"^\s*(?:new\s+)?" + PROMPT_KIND + r"prompt\s*[:：=]\s*(.+)",
              r"(?:正向|正面|视频|画面|图片)?提示词(?:改成|改为|换成|设为|设置为|设成|变成|替换为|替换成)\s*[:：]?\s*(.+)",
              r"^\s*(?:正向|正面)?提示词\s*[:：]\s*(.+)"]
PROMPT_ADD = [r"(?:add|append|include|put)\s+(.{1,1000}?)\s+(?:to|in|into)\s+the\s+" + PROMPT_KIND + r"prompt",
              r"(?:在)?(?:正向|正面)?提示词(?:里|中|里面|后面)?(?:加上|添加|增加|加入|补充|加)\s*(.+)",
              r"(?:加上|添加|增加|加入)\s*(.{1,1000}?)\s*(?:到|进)(?:正向|正面)?提示词"]
NEGATIVE_CLEAR = [r"(?:remove|clear|delete|drop|empty|no|without)\s+(?:the\s+|a\s+|any\s+)?negative(?:\s+prompt)?\b",
                  r"(?:去掉|删除|删掉|清空|移除|不要|去除)(?:掉)?(?:全部|所有)?" + NEGATIVE_ZH]
NEGATIVE_SET = [r"(?:change|set|replace|make|update)\s+(?:the\s+)?negative(?:\s+prompt)?\s+(?:to|into|with|as)\s+(.+)",
                r"negative(?:\s+prompt)?\s*[:：=]\s*(.+)",
                NEGATIVE_ZH + r"(?:改成|改为|换成|设为|设置为|设成|变成|替换为)\s*[:：]?\s*(.+)",
                NEGATIVE_ZH + r"\s*[:：]\s*(.+)"]
NEGATIVE_ADD = [r"(?:add|append|include|put)\s+(.{1,1000}?)\s+(?:to|in|into|as)\s+(?:the\s+)?negatives?"
                r"(?:\s+prompt)?",
                r"(?:在)?" + NEGATIVE_ZH + r"(?:里|中|里面|后面)?(?:再)?(?:加上|添加|增加|加入|补充|加)\s*(.+)",
                r"(?:把|将)?(.{1,1000}?)\s*(?:加到|加进|加入|添加到|放到|放进|写进|补充到)\s*" + NEGATIVE_ZH,
                r"(?:加上|添加|增加|加入)\s*(.{1,1000}?)\s*(?:到|进)" + NEGATIVE_ZH,
                r"^\s*(?:avoid|no more)\s+(.+)", r"^\s*(?:避免|不要出现|不要有)\s*(.+)"]


def _text_nodes(g: Graph, side: str) -> list[str]:
    """The text encoders that feed the samplers' `side` (positive / negative) conditioning."""
    found: list[str] = []
    for node_id in g.with_input(side, literal=False):
        enc = g.upstream(g.inputs(node_id)[side], lambda i: isinstance(g.inputs(i).get("text"), str))
        if enc and enc not in found:
            found.append(enc)
    return found


def _set_text(s: Session, side: str, text: str, *, append: bool, quoted: bool) -> None:
    g = s.graph
    nodes = _text_nodes(g, side)
    if not nodes:
        raise CannotApply(f"this workflow has no {side} prompt text to change")
    for node_id in nodes:
        old = g.inputs(node_id)["text"].strip().rstrip(",")
        g.inputs(node_id)["text"] = f"{old}, {text}" if append and old else text
    done = f"{'added to' if append else 'set'} the {side} prompt"
    s.did("negative" if side == "negative" else "prompt", "cleared the negative prompt" if side == "negative" and not text else _told(done, text), nodes)
    s.prompt_tail = None if quoted or not text else (nodes, done, text)


def _told(done: str, text: str) -> str:
    return f"{done}: {text if len(text) <= 40 else text[:39] + '…'!r}"


def apply_negative(s: Session, clause: str, facts: Facts) -> bool:
    if _search(NEGATIVE_CLEAR, clause):
        _set_text(s, "negative", "", append=False, quoted=True)
        return True
    for patterns, append in ((NEGATIVE_SET, False), (NEGATIVE_ADD, True)):
        if m := _search(patterns, clause):
            text = _unquote(m.group(1))
            if text and not _has(text, "lora"):
                if not facts.quoted:  # "people and boats", "人物、船只": a prompt list is comma separated
                    text = re.sub(r"\s*、\s*|,?\s+and\s+", ", ", text)
                _set_text(s, "negative", text, append=append, quoted=bool(facts.quoted))
                return True
    return False


def apply_prompt(s: Session, clause: str, facts: Facts) -> bool:
    for patterns, append in ((PROMPT_SET, False), (PROMPT_ADD, True)):
        if (m := _search(patterns, clause)) and (text := _unquote(m.group(1))) and not _has(text, "lora"):
            _set_text(s, "positive", text, append=append, quoted=bool(facts.quoted))
            return True
    return False


def extend_prompt(s: Session, separator: str, clause: str) -> bool:
    """A clause no operation reads, right after an unquoted prompt, is the rest of that prompt ("… to a cat
    and a dog" was split at "and")."""
    if s.prompt_tail is None:
        return False
    nodes, done, text = s.prompt_tail
    for node_id in nodes:
        s.graph.inputs(node_id)["text"] += separator + clause
    s.prompt_tail = (nodes, done, text + separator + clause)
    s.changes[-1].what = _told(done, s.prompt_tail[2])
    return True


# ---- LoRA -------------------------------------------------------------------------------------------------
LORA_CLASSES = ("LoraLoader", "LoraLoaderModelOnly")
# words in LoRA file names that tell nothing about what the LoRA does
GENERIC_LORA_WORDS = {"lora", "loras", "lycoris", "locon", "loha", "lokr", "sd15", "sd1", "sdxl", "sd3", "flux",
                      "pony", "fp16", "fp8", "bf16", "style", "model", "the", "and", "for", "with", "more", "less",
                      "add", "new", "best", "high", "low", "final", "safetensors", "pruned", "ema", "emaonly"}
STRENGTH = re.compile(r"(?:strength|weight|权重|强度|(?<![a-z])at(?![a-z])|@)[^\d\n。;；,，]{0,12}?"
                      r"(?<![A-Za-z0-9_.])(\d*\.\d+|\d+(?:\.\d+)?)(?![\d.]|\s*(?:x|倍|px|步|张|fps|steps?)\b)",
                      re.IGNORECASE)
LORA_ADD = re.compile(r"\b(?:add|another|extra|second|stack|also\s+use)\b|添加|加上|加个|加一个|再加|叠加|加入|再用",
                      re.IGNORECASE)


def _model_roots(g: Graph) -> tuple[list | None, list | None]:
    """The MODEL and CLIP outputs of the loaders (nodes that make one without taking one)."""
    def root(kind: str) -> list | None:
        for node_id in sorted(g.wf, key=_id_order):
            types = g.output_types(node_id)
            takes = any(is_link(v) and g.link_type(v) == kind for v in g.inputs(node_id).values())
            if kind in types and not takes and g.consumers(node_id, types.index(kind)):
                return [node_id, types.index(kind)]
        return None
    return root("MODEL"), root("CLIP")


def _strength(clause: str) -> float | None:
    """A LoRA strength the clause states ("at 0.8", "strength 0.7", "权重改成0.5", "强度降到 0.6"): a number
    after a strength word (or "at") that ComfyUI's sliders take as one (0 < s <= 2)."""
    for m in STRENGTH.finditer(clause):
        value = decimal(m.group(1))
        if value is not None and 0 < value <= 2:
            return value
    return None


def _lora_words(name: str) -> list[str]:
    """The words of a LoRA file name that tell it apart ("watercolor_sd15.safetensors" → ["watercolor"])."""
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.rsplit(".", 1)[0] if name.lower().endswith(LORA_EXT) else name)
    words = [w for w in re.split(r"[\s_\-.]+", stem.lower()) if w]
    return [w for w in words if len(w) >= 3 and w not in GENERIC_LORA_WORDS and not re.fullmatch(r"v?\d+\w?", w)]


def _loose_loras(s: Session, clause: str) -> list[str]:
    """Installed LoRAs the clause names loosely ("the watercolor one", "水彩LoRA", "Water-Color"): a file
    one of whose telling words the clause holds; when several match, those made for the workflow's model family."""
    lowered = clause.lower()
    squashed = re.sub(r"[\s_\-.]+", "", lowered)
    for zh, en in LORA_WORDS.items():
        if zh in clause:
            lowered, squashed = f"{lowered} {en}", squashed + en
    matches = [f for f in s.loras if any(re.search(rf"(?<![a-z]){re.escape(w)}", lowered)
                                         or (len(w) >= 5 and w in squashed) for w in _lora_words(f))]
    if len(matches) > 1:
        loaders = s.graph.with_input("ckpt_name") or s.graph.with_input("unet_name")
        model = str(s.graph.inputs(loaders[0]).get("ckpt_name") or s.graph.inputs(loaders[0]).get("unet_name")) \
            if loaders else ""
        fitting = [f for f in matches if family_of(model) and family_of(f) == family_of(model)]
        matches = fitting or matches
    return matches


def _named_lora(s: Session, clause: str, facts: Facts) -> tuple[str | None, list[str]]:
    """The LoRA the clause names (exactly, or loosely and alone), and the candidates when loosely several."""
    if facts.lora:
        return facts.lora, [facts.lora]
    matches = _loose_loras(s, clause)
    if len(matches) == 1:
        note = f"The LoRA named in {clause!r} is read as the installed {matches[0]}."
        s.notes += [note] if note not in s.notes else []
        return matches[0], matches
    return None, matches


def _choose_lora(s: Session, clause: str, facts: Facts) -> str:
    named, candidates = _named_lora(s, clause, facts)
    if named:
        return named
    answer = s.answers.get("lora")
    if answer and answer in s.loras:
        return answer
    if len(candidates) > 1:
        raise NeedsAnswer(Question(text="Several installed LoRAs match: which one should be used?",
                                   choices=candidates, slot="lora"))
    text = ("Which LoRA should be used?" if s.loras else
            "No LoRA is installed: put a LoRA file in the models/loras folder, or name one")
    raise NeedsAnswer(Question(text=text, choices=list(s.loras), slot="lora"))


def add_lora(s: Session, name: str, strength: float | None) -> None:
    g = s.graph
    model, clip = _model_roots(g)
    if model is None:
        raise CannotApply("this workflow loads no model to put a LoRA on")
    value = 1.0 if strength is None else strength
    if clip is None:
        lora = g.add("LoraLoaderModelOnly", model=model, lora_name=name, strength_model=value)
    else:
        lora = g.add("LoraLoader", model=model, clip=clip, lora_name=name, strength_model=value,
                     strength_clip=value)
        moved = g.rewire(clip, [lora, 1], skip={lora})
    moved = g.rewire(model, [lora, 0], skip={lora}) + (moved if clip is not None else [])
    s.did("lora", f"added LoRA {name} (strength {value})", [lora] + moved)


def remove_loras(s: Session, clause: str, facts: Facts) -> None:
    g = s.graph
    named, _ = _named_lora(s, clause, facts)
    loras = [i for i in g.of_class(*LORA_CLASSES) if not named or g.inputs(i).get("lora_name") == named]
    if not loras:
        raise CannotApply(f"this workflow has no LoRA {named or ''} to remove".replace("  ", " "))
    moved: list[str] = []
    for lora in loras:
        inputs = g.inputs(lora)
        moved += g.rewire([lora, 0], inputs["model"])
        if "clip" in inputs:
            moved += g.rewire([lora, 1], inputs["clip"])
        g.remove(lora)
    s.did("lora", f"removed {named or 'the LoRA'} and rewired its consumers to the loader", loras + moved)


def apply_lora(s: Session, clause: str, facts: Facts) -> bool:
    """Add, remove, switch or re-weight a LoRA. A clause that names no new LoRA but states a strength changes
    the strength of those present ("LoRA 权重改成 0.5"); only adding or switching without a name asks."""
    g = s.graph
    strength = _strength(clause)
    follow_up = [i for i in s.last_loras if i in g.wf]
    if not (_has(clause, "lora") or facts.lora):
        if follow_up and strength is not None and re.search(r"strength|weight|权重|强度", clause, re.IGNORECASE):
            _set_lora_strength(s, follow_up, strength)
            return True
        return False
    existing = g.of_class(*LORA_CLASSES)
    if _has(clause, *REMOVE_WORDS) or re.search(r"\bno\s+lora", clause, re.IGNORECASE):
        remove_loras(s, clause, facts)
    elif existing and not LORA_ADD.search(clause):
        named, _ = _named_lora(s, clause, facts)
        present = [i for i in existing if g.inputs(i).get("lora_name") == named]
        if present or (named is None and strength is not None):
            _set_lora_strength(s, present or existing, strength, already=named)
        elif named or _has(clause, *SWITCH_WORDS):
            name = named or _choose_lora(s, clause, facts)
            for lora in existing:
                g.inputs(lora)["lora_name"] = name
            s.did("lora", f"lora_name = {name}", existing)
            _set_lora_strength(s, existing, strength)
        else:
            return False
    else:
        add_lora(s, _choose_lora(s, clause, facts), strength)
    s.last_loras = [i for i in s.changes[-1].nodes if i in g.wf and g.cls(i) in LORA_CLASSES] if s.changes else []
    return True


def _set_lora_strength(s: Session, loras: list[str], strength: float | None, already: str | None = None) -> None:
    if strength is None:
        if already:
            s.did("lora", f"LoRA {already} (already in the workflow)", [])
        return
    for lora in loras:
        for key in ("strength_model", "strength_clip"):
            if key in s.graph.inputs(lora):
                s.graph.inputs(lora)[key] = strength
    s.did("lora", f"LoRA strength = {strength}", loras)


# ---- checkpoint -------------------------------------------------------------------------------------------
def family_of(name: str) -> str | None:
    lowered = name.lower()
    return next((fam for fam, marks in FAMILIES.items() if any(m in lowered for m in marks)), None)


def _family_asked(clause: str) -> str | None:
    return next((fam for pattern, fam in FAMILY_WORDS if re.search(pattern, clause, re.IGNORECASE)), None)


def apply_checkpoint(s: Session, clause: str, facts: Facts) -> bool:
    family = _family_asked(clause)
    if not facts.checkpoint and not (family and _has(clause, *SWITCH_WORDS, "checkpoint", "model", "模型")):
        return False
    g = s.graph
    loaders = g.with_input("ckpt_name")
    if not loaders:
        raise CannotApply("this workflow has no checkpoint loader (its model is loaded in parts)")
    name = facts.checkpoint or _pick_checkpoint(s, family)
    old = g.inputs(loaders[0])["ckpt_name"]
    for loader in loaders:
        g.inputs(loader)["ckpt_name"] = name
    s.did("checkpoint", f"checkpoint = {name}", loaders)
    _resize_for(s, family_of(str(old)), family or family_of(name))
    return True


def _pick_checkpoint(s: Session, family: str | None) -> str:
    answer = s.answers.get("checkpoint")
    if answer and answer in s.checkpoints:
        return answer
    fitting = [c for c in sorted(s.checkpoints) if family_of(c) == family]
    if fitting:
        return fitting[0]
    label = {"sdxl": "SDXL", "sd15": "SD 1.5", "flux": "Flux", "sd3": "SD3"}.get(family or "", "such")
    raise NeedsAnswer(Question(text=f"No {label} checkpoint is installed: which checkpoint should the workflow use?",
                               choices=list(s.checkpoints), slot="checkpoint"))


def _resize_for(s: Session, old: str | None, new: str | None) -> None:
    """A model family has its native size: SD 1.5 latents (512) double for SDXL-class models, and halve back."""
    size = _size_of(s.graph)
    if size is None or old == new:
        return
    w, h = size
    if new in LARGE_FAMILIES and max(w, h) <= 768:
        set_size(s, w * 2, h * 2)
    elif new == "sd15" and old in LARGE_FAMILIES and min(w, h) >= 1024:
        set_size(s, w // 2, h // 2)


# ---- appended stages: upscale, hires fix ------------------------------------------------------------------
HIRES_WORDS = ("hires", "hi-res", "highres", "high-res", "high res", "高清修复", "二次采样", "latent upscale",
               "upscale the latent", "second pass", "潜空间放大")
UPSCALE_WORDS = ("upscale", "enlarge", "upscaling", "upres", "放大", "超分", "super-res", "super res")


def _scale(clause: str, facts: Facts) -> float | None:
    if facts.scale:
        return facts.scale
    m = re.search(r"(?<!\d)(\d+(?:\.\d+)?)\s*倍", clause) or re.search(r"(?<![\w.])x\s*(\d+(?:\.\d+)?)\b", clause)
    return decimal(m.group(1)) if m else None


def _final_images(g: Graph) -> dict[tuple[str, int], list[str]]:
    """The IMAGE outputs that feed output nodes (save, preview), with those nodes."""
    finals: dict[tuple[str, int], list[str]] = {}
    for node_id in g.wf:
        link = g.inputs(node_id).get("images")
        if g.is_output(node_id) and is_link(link):
            finals.setdefault((link[0], link[1]), []).append(node_id)
    return finals


def _native_scale(model: str) -> float:
    m = re.search(r"(?<![\d.])(\d)x|x(\d)(?!\d)", model, re.IGNORECASE)
    return float(m.group(1) or m.group(2)) if m else 4.0


def apply_upscale(s: Session, clause: str, facts: Facts) -> bool:
    if not _has(clause, *UPSCALE_WORDS) or _has(clause, *HIRES_WORDS):
        return False
    g = s.graph
    finals = _final_images(g)
    if not finals:
        raise CannotApply("no image of this workflow reaches a save or preview node to upscale")
    factor = _scale(clause, facts) or 2.0
    named = next((m for m in s.upscale_models if m.lower() in clause.lower()), None)
    model = named or s.answers.get("upscale_model") or (sorted(s.upscale_models)[0] if s.upscale_models else None)
    if not all(name in g.registry for name in ("UpscaleModelLoader", "ImageUpscaleWithModel")):
        model = None  # this catalog cannot load upscale models: enlarge the pixels instead
    touched: list[str] = []
    for (source, slot), outputs in finals.items():
        image: list = [source, slot]
        if model:
            loader = g.add("UpscaleModelLoader", model_name=model)
            upscaled = g.add("ImageUpscaleWithModel", upscale_model=[loader, 0], image=image)
            image, touched = [upscaled, 0], touched + [loader, upscaled]
        if not model or abs(factor - _native_scale(model)) > 1e-6:
            by = factor / _native_scale(model) if model else factor
            scaled = g.add("ImageScaleBy", image=image, upscale_method="lanczos", scale_by=round(by, 4))
            image, touched = [scaled, 0], touched + [scaled]
        for out in outputs:
            g.inputs(out)["images"] = image
        touched += outputs
    s.did("upscale", f"upscale {factor:g}x" + (f" with {model}" if model else " (pixels, lanczos)"), touched)
    return True


INTERPOLATE_WORDS = re.compile(r"interpolat|补帧|插帧|frame[- ]rate up|\brife\b|film vfi|smoother motion|更流畅|更丝滑",
                               re.IGNORECASE)
INTERPOLATE_NODE = re.compile(r"vfi|frame_?interp|interpolat", re.IGNORECASE)


def _interpolators(registry: NodeRegistry) -> list[str]:
    """Classes of this catalog that may interpolate frames: named so, and taking and making IMAGE."""
    found = []
    for name in registry.names():
        spec = registry.spec(name) if INTERPOLATE_NODE.search(name) else None
        if spec and "IMAGE" in {i.type for i in spec.inputs} and "IMAGE" in {o.type for o in spec.outputs}:
            found.append(name)
    return found


def apply_interpolate(s: Session, clause: str, facts: Facts) -> bool:
    """Frame interpolation: no core ComfyUI node does it, so the clause is reported (not dropped) with what
    would provide it; a catalog that has such a node gets its name in the reason."""
    if not INTERPOLATE_WORDS.search(clause):
        return False
    fps = re.search(r"(\d+)\s*(?:fps|帧每秒|帧/秒)", clause, re.IGNORECASE)
    aim = f" to {fps.group(1)} fps" if fps else ""
    found = _interpolators(s.graph.registry)
    if found:
        raise CannotApply(f"the editor does not wire {', '.join(found)} by words yet (interpolation{aim})",
                          kind="interpolate", suggestion=f"add {found[0]} between the VAE decode and the save node")
    raise CannotApply(f"no installed node provides frame interpolation{aim}", kind="interpolate",
                      suggestion="packs such as ComfyUI-Frame-Interpolation (RIFE, FILM) provide it")


def apply_hires(s: Session, clause: str, facts: Facts) -> bool:
    if not _has(clause, *HIRES_WORDS):
        return False
    g = s.graph
    samplers = [v[0] for d in g.of_class("VAEDecode") if is_link(v := g.inputs(d).get("samples"))
                and v[0] in g.wf and g.cls(v[0]) == "KSampler"]
    if not samplers:
        raise CannotApply("no KSampler output is decoded here to refine in a second pass")
    factor = _scale(clause, facts) or 1.5
    touched: list[str] = []
    for sampler in dict.fromkeys(samplers):
        up = g.add("LatentUpscaleBy", samples=[sampler, 0], upscale_method="nearest-exact", scale_by=factor)
        second_inputs = {**copy.deepcopy(g.inputs(sampler)), "latent_image": [up, 0], "denoise": 0.5}
        second = g.add("KSampler", **second_inputs)
        touched += [up, second] + g.rewire([sampler, 0], [second, 0], skip={up, second})
    s.did("hires", f"hires fix: latent upscale {factor:g}x and a second KSampler pass at denoise 0.5", touched)
    return True


# ---- output nodes, input image, removing a node -----------------------------------------------------------
PREVIEW_WORDS = ("preview only", "only preview", "just preview", "don't save", "do not save", "no saving",
                 "instead of saving", "只预览", "仅预览", "不保存", "不要保存", "预览就行", "预览即可", "别保存")
SAVE_WORDS = ("save", "保存", "存下", "存成", "存为")


def _replace_output(s: Session, old: str, class_type: str, **values: Any) -> str:
    g = s.graph
    new = g.add(class_type, images=g.inputs(old)["images"], **values)
    g.remove(old)
    return new


def apply_output(s: Session, clause: str, facts: Facts) -> bool:
    g = s.graph
    saves = [i for i in g.wf if g.is_output(i) and is_link(g.inputs(i).get("images"))]
    webp = _has(clause, "webp")
    if not saves or not _has(clause, *PREVIEW_WORDS, *SAVE_WORDS):
        return False
    made: list[str] = []
    for node_id in saves:
        prefix = g.inputs(node_id).get("filename_prefix", "ComfyUI")
        if _has(clause, *PREVIEW_WORDS):
            target, values = "PreviewImage", {}
        elif webp:
            target, values = "SaveAnimatedWEBP", {"filename_prefix": prefix, "fps": 6.0, "lossless": False,
                                                  "quality": 90, "method": "default"}
        else:
            target, values = "SaveImage", {"filename_prefix": prefix}
        if g.cls(node_id) != target:
            made += [node_id, _replace_output(s, node_id, target, **values)]
    what = {"PreviewImage": "preview instead of saving", "SaveAnimatedWEBP": "save as WebP",
            "SaveImage": "save the images (PNG)"}[target]
    s.did("save", what if made else f"{what} (already so)", made)
    return True


def apply_input_image(s: Session, clause: str, facts: Facts) -> bool:
    images = [f for f in facts.files if f.lower().endswith(IMAGE_EXT)]
    if not images:
        return False
    g = s.graph
    loaders = g.with_input("image")
    if not loaders:
        raise CannotApply("this workflow reads no input image to replace")
    name = images[0]
    if name not in s.inputs:
        answer = s.answers.get("image")
        if not (answer and answer in s.inputs):
            raise NeedsAnswer(Question(text=f"{name} is not in the input folder: which input image should be used?",
                                       choices=list(s.inputs), slot="image"))
        name = answer
    for loader in loaders[:1]:
        g.inputs(loader)["image"] = name
    s.did("input_image", f"input image = {name}", loaders[:1])
    return True


def _split_camel(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


def _named_nodes(g: Graph, clause: str) -> list[str]:
    """Nodes the clause names by class, title or id ("the ImageScaleBy node", "节点 7")."""
    lowered = clause.lower()
    if (m := re.search(r"(?:node|节点)\s*#?\s*(\w+)", clause, re.IGNORECASE)) and m.group(1) in g.wf:
        return [m.group(1)]
    best: list[str] = []
    for name in sorted({g.cls(i) for i in g.wf}, key=len, reverse=True):
        title_hit = [i for i in g.of_class(name)
                     if str((g.wf[i].get("_meta") or {}).get("title", "")).lower() in lowered
                     and (g.wf[i].get("_meta") or {}).get("title")]
        if name.lower() in lowered or _split_camel(name) in lowered:
            return g.of_class(name)
        best = best or title_hit
    return best


def apply_remove_node(s: Session, clause: str, facts: Facts) -> bool:
    if not _has(clause, *REMOVE_WORDS):
        return False
    g = s.graph
    targets = _named_nodes(g, clause)
    if not targets:
        return False
    classes = sorted({g.cls(i) for i in targets})
    sources = [v[0] for i in targets for v in g.inputs(i).values() if is_link(v)]
    moved: list[str] = []
    for node_id in targets:
        moved += _bypass(g, node_id)
    pruned = g.prune_orphans(sources)
    also = f" (and {len(pruned)} node(s) only it used)" if pruned else ""
    s.did("remove_node", f"removed {', '.join(classes)}{also}", targets + moved + pruned)
    return True


def _bypass(g: Graph, node_id: str) -> list[str]:
    """Remove a node the way ComfyUI bypasses one: each consumer gets the node's input of the same type."""
    moved: list[str] = []
    for slot, kind in enumerate(g.output_types(node_id)):
        users = g.consumers(node_id, slot)
        if not users:
            continue
        through = next((v for v in g.inputs(node_id).values() if is_link(v) and g.link_type(v) == kind), None)
        if through is None:
            raise CannotApply(f"{g.cls(node_id)} {node_id} makes the {kind} its consumers need and takes none "
                              "to pass through: removing it would leave them unconnected")
        moved += g.rewire([node_id, slot], through)
    g.remove(node_id)
    return moved


# ---- reading the request, applying it ---------------------------------------------------------------------
STRUCTURAL: list[Callable[[Session, str, Facts], bool]] = [
    apply_negative, apply_prompt, apply_lora, apply_checkpoint, apply_interpolate, apply_hires, apply_upscale,
    apply_output, apply_input_image, apply_remove_node]
VALUES: list[Callable[[Session, str, Facts], bool]] = [apply_sampling, apply_size, apply_count, apply_frames]
# the capability each operation stands for (Change.kind and NotCovered.kind)
OP_KINDS = {"apply_negative": "negative", "apply_prompt": "prompt", "apply_lora": "lora",
            "apply_checkpoint": "checkpoint", "apply_interpolate": "interpolate", "apply_hires": "hires",
            "apply_upscale": "upscale", "apply_output": "save", "apply_input_image": "input_image",
            "apply_remove_node": "remove_node", "apply_sampling": "sampling", "apply_size": "size",
            "apply_count": "count", "apply_frames": "length"}


def split_clauses(text: str) -> list[tuple[str, str]]:
    """The clauses of a request with the separator before each ("and", "然后", ",", ";" …), never splitting
    inside quotes: "add 'cats and dogs' to the prompt" stays one clause."""
    spans = [m.span() for m in re.finditer(QUOTE_SPAN, text)]
    spans += [m.span() for m in re.finditer(ADD_SPAN, text, re.IGNORECASE)]
    pieces: list[tuple[str, str]] = []
    start, separator = 0, ""
    for m in re.finditer(SEPARATORS, text, re.IGNORECASE):
        if m.start() == m.end() or any(a <= m.start() < b for a, b in spans):
            continue
        pieces.append((separator, text[start:m.start()]))
        separator, start = m.group(0), m.end()
    pieces.append((separator, text[start:]))
    return [(sep, clause.strip()) for sep, clause in pieces if clause.strip()]


def _run(op: Callable[[Session, str, Facts], bool], s: Session, clause: str, facts: Facts) -> bool:
    """One operation on one clause; a CannotApply it raises is labelled with the operation's capability."""
    try:
        return op(s, clause, facts)
    except CannotApply as exc:
        exc.kind = exc.kind or OP_KINDS.get(op.__name__, "unknown")
        raise


def _apply_clause(s: Session, separator: str, clause: str) -> bool:
    """Apply every operation the clause states; False when none is found in it."""
    facts = s.facts(clause)
    structural = next((op for op in STRUCTURAL if _run(op, s, clause, facts)), None)
    if structural is not apply_lora:
        s.last_loras = []
    if structural in (apply_prompt, apply_negative):
        return True  # the text is the prompt: numbers in it are not settings
    appended = structural in (apply_upscale, apply_hires)  # "upscale to 2x" states no latent size or count
    values = [op for op in VALUES
              if not (appended and op in (apply_size, apply_count)) and _run(op, s, clause, facts)]
    if structural or values:
        s.prompt_tail = None
        return True
    return extend_prompt(s, separator, clause)


def _load(workflow: Any, registry: NodeRegistry) -> tuple[dict[str, Any], str]:
    """The workflow in API form from any of its forms (API/UI JSON, text form, a file path), and that form."""
    if isinstance(workflow, (str, bytes, Path)):
        loaded = load_workflow(workflow, registry)
    else:
        loaded = to_api_workflow(workflow, registry)
    prompt = loaded.prompt
    bad = [str(k) for k, v in prompt.items() if not (isinstance(v, dict) and isinstance(v.get("class_type"), str)
                                                     and isinstance(v.get("inputs", {}), dict))]
    if bad or not prompt:
        message = (f"node(s) {', '.join(bad[:5])} have no class_type and inputs object" if bad else
                   "the workflow has no nodes to edit")
        raise WorkflowFormatError([WorkflowError(type="invalid_workflow_format", message=message)])
    return copy.deepcopy(prompt), loaded.format


def edit_workflow(workflow: Any, request: str, *, registry: NodeRegistry, checkpoints: list[str],
                  loras: list[str], inputs: list[str], upscale_models: list[str],
                  answers: dict[str, str] | None = None) -> EditResult:
    """Change `workflow` as `request` says. Raises WorkflowFormatError for a workflow that cannot be read and
    BadRequest for an empty request; everything else (not understood, a question) is in the result."""
    if not isinstance(request, str) or not request.strip():
        raise BadRequest("the edit request is empty: say what to change", kind="empty_request")
    before, fmt = _load(workflow, registry)
    s = Session(graph=Graph(copy.deepcopy(before), registry), checkpoints=list(checkpoints), loras=list(loras),
                inputs=list(inputs), upscale_models=list(upscale_models), answers=dict(answers or {}))
    not_understood: list[str] = []
    not_covered: list[NotCovered] = []
    for separator, clause in split_clauses(request):
        snapshot, done, noted = copy.deepcopy(s.graph.wf), len(s.changes), len(s.notes)
        try:
            understood = _apply_clause(s, separator, clause)
        except NeedsAnswer as asked:
            return EditResult(workflow=before, diff=WorkflowDiff(), summary=asked.question.text,
                              question=asked.question, source_format=fmt)
        except CannotApply as exc:
            s.graph.wf.clear()
            s.graph.wf.update(snapshot)
            del s.changes[done:]
            del s.notes[noted:]
            s.prompt_tail = None
            not_covered.append(NotCovered(kind=exc.kind or "unknown", what=clause, reason=exc.reason,
                                          suggestion=exc.suggestion))
            continue
        if not understood:
            not_understood.append(clause)
    checked = validate(s.graph.wf, registry)
    lang = "zh" if re.search(r"[\u4e00-\u9fff]", request) else "en"
    return EditResult(workflow=s.graph.wf, diff=diff_workflows(before, s.graph.wf), changes=s.changes,
                      summary=_summary(s, not_understood, not_covered, lang), not_understood=not_understood,
                      not_covered=not_covered, notes=s.notes,
                      valid=checked.valid, errors=[e.model_dump() for e in checked.errors], source_format=fmt)


def _summary(s: Session, not_understood: list[str], not_covered: list[NotCovered], lang: str) -> str:
    done = "; ".join(c.what for c in s.changes)
    if lang == "zh":
        parts = [f"已修改工作流：{done}。" if done else "工作流没有改动。"]
        if not_covered:
            parts.append("无法完成：" + "；".join(f"“{n.what}”（{n.reason}）" for n in not_covered) + "。")
        if not_understood:
            parts.append("未能理解：" + "；".join(f"“{c}”" for c in not_understood) + "。")
    else:
        parts = [f"Edited the workflow: {done}." if done else "The workflow is unchanged."]
        if not_covered:
            parts.append("Not possible here: " + "; ".join(f"{n.what!r} ({n.reason})" for n in not_covered) + ".")
        if not_understood:
            parts.append("Not understood: " + "; ".join(repr(c) for c in not_understood) + ".")
    return " ".join(parts + s.notes)
