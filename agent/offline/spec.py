"""The offline planner's contract between reading a request and building its workflow.

`stages.read_request` turns words into a `ParsedRequest` (an ordered list of `Stage`s, each with the slots the
words give it); `chain.build` turns that into a workflow for the target catalog, stage by stage, linking each
stage to the previous one by socket type (IMAGE, LATENT, MASK, VIDEO) and loading each model once. Every
stage ends up either covered or listed as not covered: nothing a request asks for is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StageKind = Literal[
    "generate",      # text → image (t2i)
    "img2img",       # an input image redrawn from a prompt at some denoise ("turn this photo into …")
    "restyle",       # an image (input or previous stage) redrawn in a style ("as a watercolor", "改成水彩画风格")
    "edit",          # an instruction edit of an image ("make the sky purple", "add a hat")
    "inpaint",       # repaint a masked region with a prompt
    "remove",        # remove an object (inpaint with background)
    "replace",       # replace an object with another (inpaint with the replacement prompt)
    "outpaint",      # extend the canvas (left/right/top/bottom)
    "upscale",       # enlarge an image: with an upscale model when one is asked for or installed, else pixels
    "hires",         # latent upscale + a second sampling pass (hires fix)
    "controlnet",    # guide generation by a control image (canny, depth, pose, lineart, scribble, tile …)
    "reference",     # use an image as a style/subject reference (IPAdapter, unCLIP, Redux …)
    "t2v",           # text → video
    "i2v",           # image → video (animate a picture)
    "v2v",           # video → video
    "flf2v",         # first and last frame → video
    "interpolate",   # more frames (frame interpolation)
    "llm_write",     # an LLM writes text (an image prompt, copy, a story)
    "caption",       # an LLM writes a caption/slogan for the picture (a parallel text branch)
    "describe",      # describe / caption an input image (vision model)
    "summarize",     # an LLM summarizes text
    "translate",     # an LLM translates text
    "text_template",  # fill {placeholders} of a quoted template
    "regex",         # extract with a regular expression
    "invert",        # invert colours
    "face_restore",  # restore / refine faces
    "remove_background",  # cut out the subject
    "audio",         # music, speech, sound
    "3d",            # meshes, 3D models
    "save",          # save the result (image, video or text) — usually implicit at the end
    "unknown",       # a clause the reader could not map: always reported under not_covered
]


@dataclass
class Stage:
    """One step of a request, with the values the words give it (None = not stated, use the default)."""

    kind: StageKind
    text: str                          # the clause of the request this stage was read from
    prompt: str | None = None          # positive text, cleaned of instruction words, counts, files, negatives
    negative: str | None = None        # only what the user wants to avoid
    style: str | None = None           # "watercolor", "赛博朋克风格" … (also folded into prompt where it applies)
    count: int | None = None           # pictures wanted from this stage (batch size)
    width: int | None = None
    height: int | None = None
    scale: float | None = None         # upscale / hires factor
    denoise: float | None = None
    image: str | None = None           # an input image file this stage reads (from the request or answers)
    mask: str | None = None            # a mask file, when one is named
    video: str | None = None           # an input video file
    control: str | None = None         # ControlNet kind: canny | depth | pose | lineart | scribble | tile | …
    target: str | None = None          # what to remove / replace / edit ("the red car")
    replacement: str | None = None     # what it becomes ("a green car")
    direction: dict[str, int] = field(default_factory=dict)  # outpaint pixels: left/right/top/bottom
    frames: int | None = None          # video length in frames
    fps: float | None = None
    seconds: float | None = None
    language: str | None = None        # translate target ("English")
    model_hint: str | None = None      # architecture or family named: sd15 | sdxl | flux | sd3 | wan | ltxv | svd |
    #                                    hunyuan | qwen | … ; or a model file name from the request
    with_model: bool = False           # "upscale with a model" / "ESRGAN": the user asks for a model-based step
    branch: int = 0                    # two requested pictures → branches 0 and 1, each its own chain
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a stage kind needs


@dataclass
class ParsedRequest:
    """What the words ask for: the stages in order, plus the settings that apply to all of them."""

    text: str
    lang: Literal["en", "zh"]
    stages: list[Stage]
    steps: int | None = None
    cfg: float | None = None
    seeds: list[int] = field(default_factory=list)
    sampler: str | None = None
    scheduler: str | None = None
    checkpoint: str | None = None      # an installed checkpoint the request names
    lora: str | None = None            # an installed LoRA the request names
    lora_strength: float | None = None
    lora_wanted: str | None = None     # a LoRA named or asked for that is NOT installed (→ a question)
    llm_model: str | None = None
    notes: list[str] = field(default_factory=list)  # things worth telling the user (e.g. CLIP reads English best)


@dataclass
class Coverage:
    """One requested capability and whether the plan provides it."""

    stage: int                         # index into ParsedRequest.stages
    kind: str
    what: str                          # in words: "upscale 2x with 4x-UltraSharp.pth"
    nodes: list[str] = field(default_factory=list)   # node ids (covered) that do it
    reason: str = ""                   # not covered: why, and what would provide it
    suggestion: str = ""               # e.g. "packs such as ComfyUI-Frame-Interpolation provide it"

    def as_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "kind": self.kind, "what": self.what, "nodes": self.nodes,
                "reason": self.reason, "suggestion": self.suggestion}
