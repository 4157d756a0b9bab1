"""One fragment per stage kind for the offline planner's chain builder, in ComfyUI 0.3.64 core nodes.

Each fragment appends its nodes to the shared builder and links them to the chain's state by socket type
(IMAGE, LATENT, MASK, video frames, text). Before adding anything it checks that the target registry has every
class it needs; when one is missing the stage is recorded as not covered ("no installed node provides …") with
the core node names that would, so nothing a request asks for is dropped silently. Loaders and prompt encoders
go through `Ctx.once`, so each is added once and shared by every stage and branch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.builder import WorkflowBuilder
from agent.offline.bind import DOWNLOADS, Binder, family_of, scale_of
from agent.offline.spec import Coverage, ParsedRequest, Stage
from nodes.registry import NodeRegistry

Ref = list  # [node id, output slot]
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXT = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi")
QUALITY_NEGATIVE = "blurry, low quality"
SAMPLING_KINDS = ("generate", "img2img", "restyle")


@dataclass
class Question:
    """A clarifying question: the caller answers `slot` with one of `choices` (or a file it installs)."""

    text: str
    choices: list[str] = field(default_factory=list)
    slot: str = ""
    download: str = ""  # for a missing model: the file a template would download


@dataclass
class SD:
    """The loaded image model: refs to its MODEL, CLIP and VAE outputs, and its architecture."""

    model: Ref
    clip: Ref
    vae: Ref
    family: str
    checkpoint: str


@dataclass
class ChainState:
    """What the chain has produced so far in one branch; each stage reads and replaces these refs."""

    branch: int
    seed: int
    image: Ref | None = None
    image_load: str | None = None      # the LoadImage node the current image comes straight from (its MASK)
    mask: Ref | None = None
    latent: Ref | None = None          # the sampled latent behind the current image, while it is current
    frames: Ref | None = None          # decoded video frames (IMAGE batch)
    fps: float = 16.0
    text: Ref | None = None            # the last LLM/text output
    prompt_link: Ref | None = None     # an LLM-written prompt waiting for the next sampling stage
    positive: Ref | None = None        # conditioning prepared by controlnet/reference for the next sampling
    negative: Ref | None = None
    last_positive: Ref | None = None   # the conditioning the last sampling used (hires reuses it)
    last_negative: Ref | None = None
    save: bool = False                 # the request asks to save explicitly

    def set_image(self, ref: Ref, latent: Ref | None = None, load: str | None = None) -> None:
        self.image, self.latent, self.image_load = ref, latent, load


@dataclass
class Ctx:
    """One build: the builder, the request, the target registry, model binding and what was covered."""

    b: WorkflowBuilder
    parsed: ParsedRequest
    registry: NodeRegistry
    binder: Binder
    answers: dict[str, str]
    inputs: list[str]
    covered: dict[int, Coverage] = field(default_factory=dict)
    not_covered: list[Coverage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stages_used: list[str] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    _once: dict[str, str] = field(default_factory=dict)
    _sd: SD | None = None

    # ---- building blocks --------------------------------------------------------------------------------
    def once(self, class_type: str, title: str | None = None, **inputs: Any) -> str:
        """Add a node unless an identical one exists (loaders, encoders, loaded files): reuse it."""
        key = json.dumps([class_type, title, inputs], sort_keys=True, default=str)
        if key not in self._once:
            self._once[key] = self.b.add(class_type, title, **inputs)
        return self._once[key]

    def lacks(self, index: int, stage: Stage, capability: str, classes: list[str], suggestion: str = "") -> bool:
        """True (and the stage recorded as not covered) when the target registry lacks a needed class."""
        absent = [c for c in classes if c not in self.registry]
        if not absent:
            return False
        self.miss(index, stage, f"no installed node provides {capability}",
                  suggestion or f"ComfyUI core nodes {', '.join(absent)} provide it")
        return True

    def miss(self, index: int, stage: Stage, reason: str, suggestion: str = "") -> None:
        self.not_covered.append(Coverage(index, stage.kind, _what(stage), reason=reason, suggestion=suggestion))

    def cover(self, index: int, stage: Stage, what: str, nodes: list[str], used: str) -> None:
        entry = self.covered.get(index)
        if entry is None:
            self.covered[index] = Coverage(index, stage.kind, what, nodes=list(nodes))
        else:
            entry.nodes.extend(n for n in nodes if n not in entry.nodes)
        if used and used not in self.stages_used:
            self.stages_used.append(used)

    def ask(self, question: Question) -> None:
        if all(q.slot != question.slot for q in self.questions):
            self.questions.append(question)

    def later(self, index: int, stage: Stage, kinds: tuple[str, ...]) -> Stage | None:
        """The first later stage of the same branch of one of `kinds`."""
        for other in self.parsed.stages[index + 1:]:
            if other.branch == stage.branch and other.kind in kinds:
                return other
        return None

    # ---- shared pieces ------------------------------------------------------------------------------------
    def image_in(self, index: int, stage: Stage, state: ChainState, slot: str = "image",
                 name: str | None = None, use_state: bool = True) -> Ref:
        """The image a stage works on: the chain's current one, else its own file, else a question (the draft
        loads the named file, so the plan stays visible)."""
        if use_state and state.image is not None:
            return state.image
        wanted = name if name is not None else stage.image
        images = [x for x in self.inputs if x.lower().endswith(IMAGE_EXT)]
        if wanted and wanted in self.inputs:
            chosen = wanted
        elif self.answers.get(slot):
            chosen = self.answers[slot]
        else:
            chosen = wanted or (images[0] if images else "input.png")
            text = (f"{wanted} is not in the input folder. Which image should I use?" if wanted else
                    f"Which image should the {stage.kind} step use?")
            self.ask(Question(text, images, slot))
        load = self.once("LoadImage", image=chosen)
        if use_state:
            state.set_image([load, 0], load=load)
        return [load, 0]

    def sd(self) -> SD:
        """The checkpoint (and LoRA) every image stage shares, loaded once for the whole workflow."""
        if self._sd is not None:
            return self._sd
        p, hint = self.parsed, self.binder.hint
        checkpoint = p.checkpoint or self.answers.get("checkpoint")
        if not checkpoint:
            prefer_xl = hint in ("sdxl",)
            files = [f for f in self.binder.files("checkpoints") if family_of(f) not in ("ltxv", "svd", "wan")]
            ranked = sorted(files, key=lambda f: (family_of(f) != hint if hint else ("xl" in f.lower()) != prefer_xl,
                                                  "v1-5" not in f.lower(), f))
            checkpoint = ranked[0] if ranked else None
        if not checkpoint:
            checkpoint = DOWNLOADS[("checkpoints", hint if hint in ("sdxl", "flux") else "sd15")]
            self.ask(Question("No checkpoint is installed. Put one in the models/checkpoints folder, or use the "
                              "demo checkpoint (random weights) to try the workflow.", ["demo checkpoint"],
                              "checkpoint", checkpoint))
        loader = self.once("CheckpointLoaderSimple", ckpt_name=checkpoint)
        model, clip = [loader, 0], [loader, 1]
        if p.lora:
            strength = p.lora_strength if p.lora_strength is not None else 1.0
            lora = self.once("LoraLoader", model=model, clip=clip, lora_name=p.lora, strength_model=strength,
                             strength_clip=strength)
            model, clip = [lora, 0], [lora, 1]
        elif p.lora_wanted:
            self.ask(Question(f"The LoRA {p.lora_wanted!r} is not installed. Which LoRA should I use?",
                              self.binder.files("loras"), "lora"))
        family = family_of(checkpoint) or "sd15"
        self._sd = SD(model, clip, [loader, 2], family, checkpoint)
        return self._sd

    def encode(self, sd: SD, text: Any, negative: bool = False) -> Ref:
        title = "Negative prompt" if negative else "Positive prompt"
        return [self.once("CLIPTextEncode", title, text=text, clip=sd.clip), 0]

    def prompts(self, stage: Stage, state: ChainState, sd: SD, prompt: str | None = None) -> tuple[Ref, Ref]:
        """Positive and negative conditioning for a sampling stage: prepared ones (controlnet/reference)
        first, then an LLM-written prompt by link, then the stage's own words."""
        if state.positive is not None and state.negative is not None:
            positive, negative = state.positive, state.negative
            state.positive = state.negative = None
            return positive, negative
        text: Any = prompt if prompt is not None else positive_text(stage)
        if state.prompt_link is not None and prompt is None and not stage.prompt:
            text, state.prompt_link = state.prompt_link, None
        return self.encode(sd, text), self.encode(sd, negative_text(stage, sd.family), negative=True)

    def sample(self, state: ChainState, sd: SD, positive: Ref, negative: Ref, latent: Ref, denoise: float) -> Ref:
        p = self.parsed
        cfg = p.cfg if p.cfg is not None else (1.0 if sd.family == "flux" else 7.0)
        node = self.b.add("KSampler", model=sd.model, seed=state.seed, steps=p.steps or 20, cfg=cfg,
                          sampler_name=p.sampler or "euler", scheduler=p.scheduler or "normal", positive=positive,
                          negative=negative, latent_image=latent, denoise=round(denoise, 3))
        state.last_positive, state.last_negative = positive, negative
        return [node, 0]

    def decode(self, state: ChainState, sd: SD, samples: Ref) -> None:
        state.set_image([self.b.add("VAEDecode", samples=samples, vae=sd.vae), 0], latent=samples)


def positive_text(stage: Stage) -> str:
    """The stage's prompt with its style folded in (when the reader has not already done so)."""
    text = stage.prompt or stage.replacement or stage.text
    if stage.style and stage.style.lower() not in text.lower():
        text = f"{text}, {stage.style}"
    return text


def negative_text(stage: Stage, family: str) -> str:
    """Only what the user wants to avoid, plus generic quality words for SD models: never words such as
    "text" that could contradict what the prompt asks for."""
    parts = [stage.negative] if stage.negative else []
    if stage.kind == "remove" and stage.target:
        parts.append(stage.target)
    if family in ("sd15", "sdxl") and not any("blurry" in p.lower() for p in parts):
        parts.append(QUALITY_NEGATIVE)
    return ", ".join(parts)


def _what(stage: Stage) -> str:
    return f"{stage.kind}: {stage.text}".strip()


def _size(stage: Stage, family: str) -> tuple[int, int]:
    side = 1024 if family in ("sdxl", "flux", "sd3", "qwen", "kontext") else 512
    return _round(stage.width or side, 8), _round(stage.height or side, 8)


def _round(value: float, step: int) -> int:
    return max(step, int(round(value / step)) * step)


SD_CORE = ["CheckpointLoaderSimple", "CLIPTextEncode", "KSampler", "VAEDecode"]


# ---- image stages -----------------------------------------------------------------------------------------
def generate(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Text → image: an empty latent sampled at full denoise (LoRA through the shared loader)."""
    if ctx.lacks(i, stage, "text-to-image generation", SD_CORE + ["EmptyLatentImage"]):
        return
    before = set(ctx.b.prompt)
    sd = ctx.sd()
    positive, negative = ctx.prompts(stage, state, sd)
    width, height = _size(stage, sd.family)
    latent = ctx.b.add("EmptyLatentImage", width=width, height=height, batch_size=stage.count or 1)
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], 1.0))
    lora = f" with the LoRA {ctx.parsed.lora}" if ctx.parsed.lora else ""
    ctx.cover(i, stage, f"text to image {width}x{height} with {sd.checkpoint}{lora}", _new(ctx, before),
              "text-to-image")


def img2img(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """An image redrawn from a prompt: VAEEncode of the chain's (or the stage's) image at a partial denoise."""
    if ctx.lacks(i, stage, "image-to-image", SD_CORE + ["LoadImage", "VAEEncode"]):
        return
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    sd = ctx.sd()
    positive, negative = ctx.prompts(stage, state, sd)
    latent = ctx.b.add("VAEEncode", pixels=image, vae=sd.vae)
    default = 0.65 if stage.kind == "restyle" else 0.6
    denoise = stage.denoise if stage.denoise is not None else default
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], denoise))
    ctx.cover(i, stage, f"{stage.kind} at denoise {denoise}", _new(ctx, before), stage.kind)


def inpaint(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Repaint a masked region (inpaint / remove / replace). The mask is the LoadImage's own MASK output
    (ComfyUI's mask-editor convention) unless a mask file is named (LoadImageMask)."""
    needs = SD_CORE + ["LoadImage", "VAEEncodeForInpaint"]
    if stage.mask or (state.image is not None and state.image_load is None and state.mask is None):
        needs.append("LoadImageMask")
    if ctx.lacks(i, stage, "inpainting", needs):
        return
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    mask = _mask(ctx, stage, state)
    sd = ctx.sd()
    prompt = None
    if stage.kind == "remove":
        prompt = stage.prompt or "empty background, seamless continuation of the surroundings"
    elif stage.kind == "replace":
        prompt = stage.replacement or stage.prompt
    positive, negative = ctx.prompts(stage, state, sd, prompt)
    latent = ctx.b.add("VAEEncodeForInpaint", pixels=image, vae=sd.vae, mask=mask, grow_mask_by=6)
    denoise = stage.denoise if stage.denoise is not None else 1.0
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], denoise))
    target = f" {stage.target}" if stage.target else ""
    ctx.cover(i, stage, f"{stage.kind}{target} (VAEEncodeForInpaint, mask from "
              f"{'the mask file' if stage.mask else 'the image'})", _new(ctx, before), "inpaint")


def _mask(ctx: Ctx, stage: Stage, state: ChainState) -> Ref:
    """A named mask file, else the mask an earlier stage made, else the loaded image's own MASK output; an
    image from an earlier step has no painted mask, so then a mask file is asked for."""
    if not stage.mask and state.mask is not None:
        return state.mask
    if not stage.mask and state.image_load is not None:
        return [state.image_load, 1]
    name = stage.mask if stage.mask in ctx.inputs else ctx.answers.get("mask")
    if not name:
        masks = [x for x in ctx.inputs if x.lower().endswith(IMAGE_EXT)]
        text = (f"{stage.mask} is not in the input folder. Which mask should I use?" if stage.mask else
                "The image to repaint comes from an earlier step. Which mask file (white = the region to "
                "repaint) should I use?")
        ctx.ask(Question(text, masks, "mask"))
        name = stage.mask or (masks[0] if masks else "mask.png")
    return [ctx.once("LoadImageMask", image=name, channel="red"), 0]


def outpaint(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Extend the canvas: ImagePadForOutpaint's padded image and mask → VAEEncodeForInpaint → sampling."""
    if ctx.lacks(i, stage, "outpainting", SD_CORE + ["LoadImage", "ImagePadForOutpaint", "VAEEncodeForInpaint"]):
        return
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    sd = ctx.sd()
    sides = {k: _round(v, 8) if v else 0 for k, v in stage.direction.items() if k in ("left", "top", "right", "bottom")}
    if not any(sides.values()):
        sides = {"left": 256, "right": 256}
    pad = ctx.b.add("ImagePadForOutpaint", image=image, left=sides.get("left", 0), top=sides.get("top", 0),
                    right=sides.get("right", 0), bottom=sides.get("bottom", 0), feathering=40)
    positive, negative = ctx.prompts(stage, state, sd)
    latent = ctx.b.add("VAEEncodeForInpaint", pixels=[pad, 0], vae=sd.vae, mask=[pad, 1], grow_mask_by=8)
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], 1.0))
    where = ", ".join(f"{k} {v}px" for k, v in sides.items() if v)
    ctx.cover(i, stage, f"outpaint {where}", _new(ctx, before), "outpaint")


def upscale(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Enlarge: with an upscale model when asked for or installed (then ImageScaleBy to reach another
    factor), else ImageScaleBy lanczos."""
    model_nodes = ["UpscaleModelLoader", "ImageUpscaleWithModel"]
    installed = ctx.binder.find("upscale_models") if all(n in ctx.registry for n in model_nodes) else None
    use_model = stage.with_model or installed is not None or bool(ctx.answers.get("upscale_model"))
    if ctx.lacks(i, stage, "model upscaling" if use_model else "image scaling",
                 (model_nodes if use_model else []) + ["ImageScaleBy", "LoadImage"]):
        return
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    factor = stage.scale or 2.0
    if not use_model:
        node = ctx.b.add("ImageScaleBy", image=image, upscale_method="lanczos", scale_by=factor)
        state.set_image([node, 0])
        ctx.cover(i, stage, f"upscale {factor:g}x (lanczos)", _new(ctx, before), "upscale")
        return
    tag = "2x" if factor <= 2 else "4x"
    name = ctx.binder.bind("upscale_model", "upscale_models", "upscale model", tag=tag, task="upscale")
    loader = ctx.once("UpscaleModelLoader", model_name=name)
    node = ctx.b.add("ImageUpscaleWithModel", upscale_model=[loader, 0], image=image)
    native = scale_of(name) or 4
    if stage.scale is None:
        factor = float(native)
    elif abs(factor - native) > 1e-6:
        node = ctx.b.add("ImageScaleBy", image=[node, 0], upscale_method="lanczos", scale_by=round(factor / native, 4))
    state.set_image([node, 0])
    ctx.cover(i, stage, f"upscale {factor:g}x with {name}", _new(ctx, before), "upscale-model")


def hires(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Hires fix: LatentUpscaleBy of the sampled latent and a second KSampler pass at denoise 0.5."""
    if ctx.lacks(i, stage, "a hires-fix pass", SD_CORE + ["LatentUpscaleBy", "EmptyLatentImage"]):
        return
    if state.image is None:
        generate(ctx, i, stage, state)
    before = set(ctx.b.prompt)
    sd = ctx.sd()
    latent = state.latent
    if latent is None:
        if ctx.lacks(i, stage, "a hires-fix pass", ["VAEEncode"]):
            return
        latent = [ctx.b.add("VAEEncode", pixels=state.image, vae=sd.vae), 0]
    if state.last_positive is None or state.last_negative is None:
        positive, negative = ctx.prompts(stage, state, sd)
    else:
        positive, negative = state.last_positive, state.last_negative
    scale = stage.scale or 1.5
    up = ctx.b.add("LatentUpscaleBy", samples=latent, upscale_method="nearest-exact", scale_by=scale)
    denoise = stage.denoise if stage.denoise is not None else 0.5
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [up, 0], denoise))
    ctx.cover(i, stage, f"hires fix {scale:g}x, second pass at denoise {denoise}", _new(ctx, before), "hires-fix")


def invert(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    if ctx.lacks(i, stage, "colour inversion", ["ImageInvert", "LoadImage"]):
        return
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    state.set_image([ctx.b.add("ImageInvert", image=image), 0])
    ctx.cover(i, stage, "invert the colours", _new(ctx, before), "invert")


def _new(ctx: Ctx, before: set[str]) -> list[str]:
    return [n for n in ctx.b.prompt if n not in before]
