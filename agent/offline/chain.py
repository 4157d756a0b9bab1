"""The offline planner's workflow builder: a ParsedRequest's stages → one chained workflow for the target
catalog, models bound, every stage accounted for (covered, or not covered with the reason and what would).

Stages run in order, each branch (Stage.branch) on its own chain state over shared loaders; each stage's
fragment (agent.offline.fragments) links to the state by socket type. The end of each chain gets the save node
for what it holds (SaveImage, CreateVideo + SaveVideo, SaveText/PreviewAny) unless a later stage consumed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.builder import WorkflowBuilder
from agent.offline import fragments as fr
from agent.offline.bind import Binder
from agent.offline.fragments import ChainState, Ctx, Question
from agent.offline.spec import Coverage, ParsedRequest, Stage
from nodes.registry import NodeRegistry
from runtime import folders

__all__ = ["BuildResult", "Question", "build"]

Fragment = Callable[[Ctx, int, Stage, ChainState], None]

FRAGMENTS: dict[str, Fragment] = {
    "generate": fr.generate, "img2img": fr.img2img, "restyle": fr.img2img, "inpaint": fr.inpaint,
    "remove": fr.inpaint, "replace": fr.inpaint, "outpaint": fr.outpaint, "upscale": fr.upscale,
    "hires": fr.hires, "invert": fr.invert, "controlnet": fr.controlnet, "reference": fr.reference,
    "edit": fr.edit, "t2v": fr.video, "i2v": fr.video, "flf2v": fr.video, "v2v": fr.video,
    "llm_write": fr.llm_write, "caption": fr.caption, "summarize": fr.llm_text, "translate": fr.llm_text,
    "text_template": fr.text_template, "regex": fr.regex,
}

# kinds no core node provides: why, and what would
NOT_PROVIDED: dict[str, tuple[str, str]] = {
    "interpolate": ("ComfyUI has no core frame-interpolation node",
                    "packs such as ComfyUI-Frame-Interpolation (RIFE, FILM) provide it"),
    "face_restore": ("ComfyUI has no core face-restoration node",
                     "packs such as ComfyUI-Impact-Pack (FaceDetailer) or facerestore_cf provide it"),
    "remove_background": ("ComfyUI has no local core background-removal node (RecraftRemoveBackgroundNode is a "
                          "paid API node)", "packs such as ComfyUI-RMBG or comfyui-rembg provide it"),
    "describe": ("describing an image needs a vision-language model node, which the offline planner does not "
                 "wire", "packs such as ComfyUI-Florence2 or comfyui_LLM_party provide it"),
    "audio": ("the offline planner does not build audio workflows",
              "ComfyUI's Stable Audio and ACE-Step templates, or an LLM-backed planner"),
    "3d": ("the offline planner does not build 3D workflows",
           "ComfyUI's Hunyuan3D templates, or an LLM-backed planner"),
    "unknown": ("the planner could not tell what this part of the request asks for",
                "rephrase it, or plan with an LLM provider"),
}


# video steps no core node provides: the draft still carries the frames through, so the node slots in
VIDEO_THROUGH = ("interpolate",)
# image steps no core node provides: with later steps, the image they name is loaded and passed on
IMAGE_THROUGH = ("face_restore", "remove_background")


@dataclass
class BuildResult:
    """A drafted workflow (None when nothing could be built) and the account of every stage."""

    workflow: dict[str, Any] | None
    covered: list[Coverage] = field(default_factory=list)
    not_covered: list[Coverage] = field(default_factory=list)
    question: Question | None = None
    summary: str = ""
    notes: list[str] = field(default_factory=list)
    stages_used: list[str] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)  # every open question; `question` is the first


def build(parsed: ParsedRequest, *, registry: NodeRegistry, answers: dict[str, str] | None = None,
          inputs: list[str] | None = None) -> BuildResult:
    """Build the workflow for `parsed` against `registry`; `answers` (slot → value) binds asked-for files."""
    answers = dict(answers or {})
    hint = next((s.model_hint for s in parsed.stages if s.model_hint), None)
    ctx = Ctx(WorkflowBuilder(), parsed, registry, Binder(registry, answers, hint), answers,
              inputs if inputs is not None else folders.input_files())
    ctx.notes.extend(parsed.notes)
    for branch, seed in _runs(parsed):
        state = ChainState(branch=branch, seed=seed)
        for index, stage in enumerate(parsed.stages):
            if stage.branch == branch:
                _apply(ctx, index, stage, state)
        _finish(ctx, parsed, state)
    for missing in ctx.binder.missing:
        choices = missing.choices
        ctx.ask(Question(f"No {missing.what} is installed. Put {missing.download} in models/{missing.kind}"
                         + (", or choose an installed one." if choices else "."), choices, missing.slot,
                         missing.download))
    covered = [ctx.covered[i] for i in sorted(ctx.covered)]
    workflow = ctx.b.prompt or None
    return BuildResult(workflow, covered, ctx.not_covered, ctx.questions[0] if ctx.questions else None,
                       _summary(covered, ctx.not_covered, workflow is not None), ctx.notes, ctx.stages_used, ctx.questions)


def _runs(parsed: ParsedRequest) -> list[tuple[int, int]]:
    """(branch, seed) pairs: one run per branch; a single-branch request with several seeds runs once per
    seed (the loaders and prompts are shared), as today's planner samples once per seed."""
    branches = sorted({s.branch for s in parsed.stages}) or [0]
    seeds = parsed.seeds or [0]
    if len(branches) == 1 and len(seeds) > 1:
        return [(branches[0], seed) for seed in seeds]
    return [(b, seeds[n] if n < len(seeds) else seeds[0]) for n, b in enumerate(branches)]


def _apply(ctx: Ctx, index: int, stage: Stage, state: ChainState) -> None:
    if stage.kind == "save":
        state.save = True
        return
    fragment = FRAGMENTS.get(stage.kind)
    if fragment is not None:
        fragment(ctx, index, stage, state)
        return
    reason, suggestion = NOT_PROVIDED.get(stage.kind, NOT_PROVIDED["unknown"])
    if all(c.stage != index for c in ctx.not_covered):
        ctx.miss(index, stage, reason, suggestion)
    if stage.kind in VIDEO_THROUGH and fr.frames_through(ctx, index, stage, state):
        entry = next(c for c in ctx.not_covered if c.stage == index)
        if "the draft" not in entry.reason:
            entry.reason += "; the draft carries the frames through to the save, where such a node slots in"
    elif stage.kind in IMAGE_THROUGH and _image_through(ctx, index, stage, state):
        entry = next(c for c in ctx.not_covered if c.stage == index)
        if "the draft" not in entry.reason:
            entry.reason += "; the draft passes the image on to the next step, where such a node slots in"


def _image_through(ctx: Ctx, index: int, stage: Stage, state: ChainState) -> bool:
    """An image step no core node provides (face restore, background removal) with later steps: the image it
    names is loaded and passed on, so "人脸修复加超分 face.png" still upscales face.png rather than asking which
    image the upscale means or failing with nothing built. True when the chain holds an image."""
    if state.image is not None:
        return True
    later = any(s.branch == stage.branch for s in ctx.parsed.stages[index + 1:])
    if not later or not stage.image or "LoadImage" not in ctx.registry:
        return False
    ctx.image_in(index, stage, state)
    return True


def _finish(ctx: Ctx, parsed: ParsedRequest, state: ChainState) -> None:
    """Save what the chain ends with: video frames, else the image, else the text."""
    b, saves = ctx.b, []
    if state.frames is not None:
        fps = state.fps if isinstance(state.fps, list) else float(state.fps)
        if "CreateVideo" in ctx.registry and "SaveVideo" in ctx.registry:
            sound = {"audio": state.audio} if state.audio is not None else {}
            video = b.add("CreateVideo", images=state.frames, fps=fps, **sound)
            saves += [video, b.add("SaveVideo", video=[video, 0], filename_prefix="NodeWeaver/video", format="auto",
                                   codec="auto")]
        elif "SaveAnimatedWEBP" in ctx.registry:
            saves.append(b.add("SaveAnimatedWEBP", images=state.frames, filename_prefix="NodeWeaver/video",
                               fps=fps, lossless=False, quality=90, method="default"))
        else:
            saves.append(b.add("SaveImage", images=state.frames, filename_prefix="NodeWeaver/frames"))
    if state.image is not None:
        saves.append(b.add("SaveImage", images=state.image, filename_prefix="NodeWeaver/image"))
    if state.text is not None:
        if state.save or "PreviewAny" not in ctx.registry:
            saves.append(b.add("SaveText", text=state.text, filename_prefix="NodeWeaver/text", format="txt"))
        else:
            saves.append(b.add("PreviewAny", source=state.text))
    for index, stage in enumerate(parsed.stages):
        if stage.kind == "save" and stage.branch == state.branch:
            if saves:
                ctx.cover(index, stage, "save the result", saves, "")
            elif all(c.stage != index for c in ctx.not_covered):
                ctx.miss(index, stage, "nothing earlier in the request produces a result to save")


def _summary(covered: list[Coverage], not_covered: list[Coverage], drafted: bool = False) -> str:
    """What the plan does, in order; a draft with no covered stage only loads and saves its input."""
    drafted_only = "a draft from the words alone" if any(c.kind == "reference" for c in not_covered) else \
        "load the input and save it unchanged"
    done = " → ".join(c.what.split(" (")[0] for c in covered) or (drafted_only if drafted else "nothing buildable")
    if not_covered:
        return f"{done}; not covered: {', '.join(c.kind for c in not_covered)}"
    return done
