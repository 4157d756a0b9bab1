"""One fragment per stage kind for the offline planner's chain builder, in ComfyUI 0.3.64 core nodes.

Each fragment appends its nodes to the shared builder and links them to the chain's state by socket type
(IMAGE, LATENT, MASK, video frames, text). Before adding anything it checks that the target registry has every
class it needs; when one is missing the stage is recorded as not covered ("no installed node provides …") with
the core node names that would, so nothing a request asks for is dropped silently. Loaders and prompt encoders
go through `Ctx.once`, so each is added once and shared by every stage and branch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from agent.builder import WorkflowBuilder
from agent.offline.bind import DOWNLOADS, Binder, family_of, scale_of
from agent.offline.spec import Coverage, ParsedRequest, Stage
from nodes.registry import NodeRegistry
from runtime import folders

Ref = list  # [node id, output slot]
IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_EXT = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi")
QUALITY_NEGATIVE = "blurry, low quality"
SAMPLING_KINDS = ("generate", "img2img", "restyle")
FAMILY_CFG = {"flux": 1.0, "qwen": 2.5, "wan": 6.0, "ltxv": 3.0, "svd": 2.5}


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
    fps: float | Ref = 16.0            # a number, or a link (a loaded video's own frame rate)
    audio: Ref | None = None           # a loaded video's sound track, kept when its frames are re-saved
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

    def miss(self, index: int, stage: Stage, reason: str, suggestion: str = "", what: str | None = None) -> None:
        """Record a part not covered, once per stage, kind and part (a branch run per seed repeats stages)."""
        entry = Coverage(index, stage.kind, what or _what(stage), reason=reason, suggestion=suggestion)
        if all((c.stage, c.kind, c.what) != (entry.stage, entry.kind, entry.what) for c in self.not_covered):
            self.not_covered.append(entry)

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
        wanted = stage.image if name is None else (name or None)  # name "" = a second, unnamed image
        images = [x for x in self.inputs if x.lower().endswith(IMAGE_EXT)]
        if wanted and wanted in self.inputs:
            chosen = wanted
        elif self.answers.get(slot):
            chosen = self.answers[slot]
        else:
            chosen = wanted or (images[0] if images else "input.png")
            text = (f"{wanted} is not in the input folder. Which image should I use?" if wanted else
                    f"Which image should the {stage.kind} step use{' as its last frame' if slot == 'end_image' else ''}?")
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
        lora_name = p.lora or self.answers.get("lora") or self._installed_lora(p.lora_wanted)
        if lora_name:
            strength = p.lora_strength if p.lora_strength is not None else lora_strength(p.text, lora_name)
            lora = self.once("LoraLoader", model=model, clip=clip, lora_name=lora_name, strength_model=strength,
                             strength_clip=strength)
            model, clip = [lora, 0], [lora, 1]
        elif p.lora_wanted:
            self.ask(Question(f"The LoRA {p.lora_wanted!r} is not installed. Which LoRA should I use?",
                              self.binder.files("loras"), "lora"))
        family = family_of(checkpoint) or "sd15"
        self._sd = SD(model, clip, [loader, 2], family, checkpoint)
        return self._sd

    def _installed_lora(self, wanted: str | None) -> str | None:
        """The installed LoRA a loosely named one means ("the watercolor LoRA" → watercolor_sd15.safetensors):
        the file whose name holds the wanted words, or whose name the words hold; None when none or several
        equally good ones match (then the user is asked)."""
        if not wanted:
            return None
        key = _squash(wanted.rsplit(".", 1)[0] if wanted.lower().endswith(LORA_EXT) else wanted)
        key = LORA_WORDS.get(key, key)
        if len(key) < 3:
            return None
        files = self.binder.files("loras")
        matches = [f for f in files if key in _squash(f.rsplit(".", 1)[0]) or _squash(f.rsplit(".", 1)[0]) in key]
        if len(matches) > 1 and self.parsed.checkpoint:  # several: the one made for the checkpoint's family
            family = family_of(self.parsed.checkpoint)
            matches = [f for f in matches if family_of(f) == family] or matches
        if len(matches) != 1:
            return None
        self.notes.append(f"The LoRA {wanted!r} is read as the installed {matches[0]}.")
        return matches[0]

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
        if state.prompt_link is not None and prompt is None:  # an LLM wrote this stage's prompt
            text, state.prompt_link = state.prompt_link, None
        return self.encode(sd, text), self.encode(sd, negative_text(stage, sd.family), negative=True)

    def sample(self, state: ChainState, sd: SD, positive: Ref, negative: Ref, latent: Ref, denoise: float,
               sampler: str = "euler", scheduler: str = "normal") -> Ref:
        """A KSampler with the request's settings, else today's defaults (a model family may change the cfg
        and, for video models, the sampler and scheduler their templates use)."""
        p = self.parsed
        cfg = p.cfg if p.cfg is not None else FAMILY_CFG.get(sd.family, 7.0)
        node = self.b.add("KSampler", model=sd.model, seed=state.seed, steps=p.steps or 20, cfg=cfg,
                          sampler_name=p.sampler or sampler, scheduler=p.scheduler or scheduler, positive=positive,
                          negative=negative, latent_image=latent, denoise=round(denoise, 3))
        state.last_positive, state.last_negative = positive, negative
        return [node, 0]

    def decode(self, state: ChainState, sd: SD, samples: Ref) -> None:
        state.set_image([self.b.add("VAEDecode", samples=samples, vae=sd.vae), 0], latent=samples)


LORA_EXT = (".safetensors", ".ckpt", ".pt", ".bin")
# Chinese style words → the English words LoRA files are named with
LORA_WORDS = {"水彩": "watercolor", "油画": "oil", "像素": "pixel", "像素风": "pixel", "动漫": "anime", "二次元": "anime",
              "赛博朋克": "cyberpunk", "素描": "sketch", "线稿": "lineart", "写实": "realistic", "水墨": "ink",
              "国风": "chinese", "吉卜力": "ghibli", "黏土": "clay", "粘土": "clay"}
_STRENGTH = (r"[^。;;\n]{0,40}?(?<![A-Za-z0-9_.])(\d*\.\d+|\d+(?:\.\d+)?)"
             r"(?!\d|\s*(?:x|倍|px|步|张|秒|fps|steps?|images?|pictures?|photos?|versions?|seconds?)\b)")
_STRENGTH_WORDS = r"(?:lora|权重|强度|weight|strength)"


def _squash(text: str) -> str:
    """Lower case with separators removed, so "Water Color", "water-color" and "watercolor" compare equal."""
    return re.sub(r"[\s_\-.]+", "", text.lower())


def lora_strength(text: str, name: str = "") -> float:
    """The LoRA strength a request states ("… LoRA at strength 0.7", "with watercolor_sd15 at 0.7", "LoRA 权重
    0.6"), else 1.0; only a number that follows the LoRA's name or a strength word and that ComfyUI's
    sliders take as a strength (0 < s ≤ 2)."""
    stem = name.rsplit(".", 1)[0] if name.lower().endswith(LORA_EXT) else name
    anchors = ([re.escape(stem)] if stem else []) + [_STRENGTH_WORDS]
    for anchor in anchors:
        for match in re.finditer(anchor + _STRENGTH, text, re.IGNORECASE):
            value = float(match.group(1))
            if 0 < value <= 2:
                return value
    return 1.0


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
    ctx.cover(i, stage, _txt2img(ctx, stage, state), _new(ctx, before), "text-to-image")


def _txt2img(ctx: Ctx, stage: Stage, state: ChainState) -> str:
    """The text-to-image nodes (also under a ControlNet, reference or hires stage); says what it drew."""
    sd = ctx.sd()
    positive, negative = ctx.prompts(stage, state, sd)
    width, height = _size(stage, sd.family)
    latent = ctx.b.add("EmptyLatentImage", width=width, height=height, batch_size=stage.count or 1)
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], 1.0))
    lora = f" with the LoRA {ctx.parsed.lora}" if ctx.parsed.lora else ""
    return f"text to image {width}x{height} with {sd.checkpoint}{lora}"


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
    if not any(sides.values()) and stage.extra.get("aspect"):
        sides = _aspect_padding(ctx, i, stage, sd.family, stage.extra["aspect"])
    if not any(sides.values()):
        sides = {"left": 256, "right": 256}
    pad = ctx.b.add("ImagePadForOutpaint", image=image, left=sides.get("left", 0), top=sides.get("top", 0),
                    right=sides.get("right", 0), bottom=sides.get("bottom", 0), feathering=40)
    positive, negative = ctx.prompts(stage, state, sd)
    latent = ctx.b.add("VAEEncodeForInpaint", pixels=[pad, 0], vae=sd.vae, mask=[pad, 1], grow_mask_by=8)
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], 1.0))
    where = ", ".join(f"{k} {v}px" for k, v in sides.items() if v)
    ctx.cover(i, stage, f"outpaint {where}", _new(ctx, before), "outpaint")


def _image_size(name: str | None) -> tuple[int, int] | None:
    """An input image's size from its header (PIL opens lazily: no pixels are decoded); None when unreadable."""
    if not name:
        return None
    try:
        from PIL import Image

        with Image.open(folders.input_path(name)) as image:
            return image.size
    except (OSError, ValueError):  # unreadable, not an image, or an unsafe name
        return None


def _aspect_padding(ctx: Ctx, i: int, stage: Stage, family: str, aspect: list[int]) -> dict[str, int]:
    """The padding that brings the source picture to `aspect`: split evenly on the short sides. The size is the
    input file's (read from its header) or an earlier stage's; otherwise the model's default side, said in the
    notes."""
    size = _image_size(stage.image) if stage.image in ctx.inputs else None
    if size is None:
        earlier = next((s for s in reversed(ctx.parsed.stages[:i]) if s.branch == stage.branch and s.width), None)
        size = (earlier.width, earlier.height or earlier.width) if earlier else None
    if size is None:
        size = _size(stage, family)
        ctx.notes.append(f"The source picture's size is not known before it runs: the outpaint padding assumes "
                         f"{size[0]}x{size[1]}.")
    width, height = size
    target_w, target_h = aspect
    if width * target_h < height * target_w:  # too narrow: widen
        extra = _round(height * target_w / target_h - width, 16)
        return {"left": extra // 2, "right": extra // 2, "top": 0, "bottom": 0}
    extra = _round(width * target_h / target_w - height, 16) if width * target_h > height * target_w else 0
    return {"left": 0, "right": 0, "top": extra // 2, "bottom": extra // 2}


def upscale(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Enlarge: with an upscale model when asked for or installed (then ImageScaleBy to reach another
    factor), else ImageScaleBy lanczos."""
    model_nodes = ["UpscaleModelLoader", "ImageUpscaleWithModel"]
    installed = ctx.binder.find("upscale_models") if all(n in ctx.registry for n in model_nodes) else None
    use_model = not stage.extra.get("resize") and \
        (stage.with_model or installed is not None or bool(ctx.answers.get("upscale_model")))
    if ctx.lacks(i, stage, "model upscaling" if use_model else "image scaling",
                 (model_nodes if use_model else []) + ["ImageScaleBy", "LoadImage"]):
        return
    before = set(ctx.b.prompt)
    # after a video step the chain holds frames: they are upscaled as one batch and stay the video
    frames = state.image is None and state.frames is not None and not stage.image
    image = state.frames if frames else ctx.image_in(i, stage, state)
    factor = stage.scale or 2.0
    if not use_model:
        node = ctx.b.add("ImageScaleBy", image=image, upscale_method="lanczos", scale_by=factor)
        _scaled(state, [node, 0], frames)
        verb = "resize" if stage.extra.get("resize") else "upscale"
        ctx.cover(i, stage, f"{verb} {factor:g}x (lanczos)", _new(ctx, before), "upscale")
        return
    tag = "2x" if factor <= 2 else "4x"
    name = _named_upscaler(ctx, stage, factor) or \
        ctx.binder.bind("upscale_model", "upscale_models", "upscale model", tag=tag, task="upscale")
    loader = ctx.once("UpscaleModelLoader", model_name=name)
    node = ctx.b.add("ImageUpscaleWithModel", upscale_model=[loader, 0], image=image)
    native = scale_of(name) or 4
    if stage.scale is None:
        factor = float(native)
    elif abs(factor - native) > 1e-6:
        node = ctx.b.add("ImageScaleBy", image=[node, 0], upscale_method="lanczos", scale_by=round(factor / native, 4))
    _scaled(state, [node, 0], frames)
    ctx.cover(i, stage, f"upscale {factor:g}x with {name}", _new(ctx, before), "upscale-model")


def _scaled(state: ChainState, ref: Ref, frames: bool) -> None:
    if frames:
        state.frames = ref
    else:
        state.set_image(ref)


def _squeeze(name: str) -> str:
    return re.sub(r"[\W_]+", "", name.lower())


def _named_upscaler(ctx: Ctx, stage: Stage, factor: float) -> str | None:
    """The installed upscale model the request names ("with RealESRGAN", "用4x-UltraSharp"), preferring one made
    for the factor asked; None when none is named (or answered), and a note when the named one is not installed."""
    if ctx.answers.get("upscale_model") or not stage.model_hint:
        return None
    wanted = _squeeze(re.sub(r"\.(?:pth|pt|safetensors|ckpt|bin|onnx)$", "", stage.model_hint, flags=re.IGNORECASE))
    if len(wanted) < 3:
        return None
    found = [f for f in ctx.binder.files("upscale_models") if wanted in _squeeze(f)]
    if not found:
        ctx.notes.append(f"No installed upscale model matches {stage.model_hint!r}; another one is used.")
        return None
    return sorted(found, key=lambda f: (scale_of(f) != round(factor), f))[0]


def hires(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Hires fix: LatentUpscaleBy of the sampled latent and a second KSampler pass at denoise 0.5."""
    if ctx.lacks(i, stage, "a hires-fix pass", SD_CORE + ["LatentUpscaleBy", "EmptyLatentImage"]):
        return
    before = set(ctx.b.prompt)
    if state.image is None:
        _txt2img(ctx, stage, state)
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


# ---- conditioning stages: ControlNet and reference -----------------------------------------------------------
CONTROL_PATTERNS = {"canny": "canny", "depth": "depth", "pose": "pose", "openpose": "pose", "lineart": "lineart",
                    "scribble": "scribble", "tile": "tile", "softedge": "softedge", "normal": "normal"}


EDGE_LIKE = ("lineart", "scribble", "softedge")


def _cn_avoid(arch: str) -> tuple[str, ...]:
    return ("sd15", "v11") if arch == "sdxl" else ("xl",)


def _edges_instead(ctx: Ctx, control: str, arch: str) -> bool:
    """A line-art/scribble/soft-edge guide with no such ControlNet installed but a canny one: the canny model
    on the image's Canny edges follows the same lines (said in the notes), rather than asking for a model."""
    if ctx.answers.get("controlnet") or ctx.binder.find("controlnet", need=[control], avoid=_cn_avoid(arch)):
        return False
    canny = ctx.binder.find("controlnet", need=["canny"], avoid=_cn_avoid(arch))
    if canny:
        ctx.notes.append(f"No {control} ControlNet is installed: the draft guides by the image's Canny edges with "
                         f"{canny}; {DOWNLOADS.get(('controlnet', f'{arch}-{control}'), f'a {control} ControlNet')} "
                         "follows the lines more faithfully.")
    return canny is not None


def controlnet(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Guide generation by a control image: ControlNetLoader + ControlNetApplyAdvanced (Canny first for a
    canny edge map; a depth/pose map the user gives is used as is). It prepares the conditioning of the next
    sampling stage of the branch, or samples itself when none follows."""
    control = CONTROL_PATTERNS.get((stage.control or "canny").lower(), (stage.control or "canny").lower())
    needs = SD_CORE + ["LoadImage", "ControlNetLoader", "ControlNetApplyAdvanced", "EmptyLatentImage"]
    if ctx.lacks(i, stage, f"{control} ControlNet guidance", needs + (["Canny"] if control == "canny" else [])):
        return
    before = set(ctx.b.prompt)
    follower = ctx.later(i, stage, SAMPLING_KINDS + ("reference",))  # a reference after it samples under it
    sd = ctx.sd()
    image = ctx.image_in(i, stage, state, use_state=False) if stage.image or state.image is None else state.image
    arch = "sdxl" if sd.family == "sdxl" else "sd15"
    if control in EDGE_LIKE and "Canny" in ctx.registry and _edges_instead(ctx, control, arch):
        control = "canny"
    name = ctx.binder.bind("controlnet", "controlnet", f"{control} ControlNet for {arch}", tag=f"{arch}-{control}",
                           need=[control], avoid=_cn_avoid(arch), task="controlnet")
    hint = image
    is_map = bool(stage.extra.get("is_map")) or (stage.image and control in stage.image.lower())
    if control == "canny" and not is_map:
        low, high = stage.extra.get("low_threshold", 0.4), stage.extra.get("high_threshold", 0.8)
        hint = [ctx.b.add("Canny", image=image, low_threshold=min(low, high), high_threshold=max(low, high)), 0]
    elif not is_map:
        ctx.miss(i, stage, f"ComfyUI has no core {control} estimator; the draft feeds the image to the ControlNet "
                 "as if it were the map", "packs such as comfyui_controlnet_aux provide it",
                 what=f"{control} estimation from the photo")
    loader = ctx.once("ControlNetLoader", control_net_name=name)
    source = follower or stage
    positive, negative = ctx.prompts(source, state, sd)
    applied = ctx.b.add("ControlNetApplyAdvanced", positive=positive, negative=negative, control_net=[loader, 0],
                        image=hint, strength=float(stage.extra.get("strength", 1.0)), start_percent=0.0,
                        end_percent=1.0, vae=sd.vae)
    state.positive, state.negative = [applied, 0], [applied, 1]
    if follower is None:
        _txt2img(ctx, stage, state)
    ctx.cover(i, stage, f"{control} ControlNet with {name}", _new(ctx, before), f"controlnet-{control}")


def reference(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """An image as a style/subject reference, with what is installed: Redux (a style model + CLIPVisionEncode
    → StyleModelApply), else for SDXL the ViT-bigG vision model through unCLIPConditioning (SDXL reads it as
    its pooled embedding: "revision"). Like ControlNet it prepares the next sampling. With neither, no core node
    can apply the image, so the reference is not covered (with the reason) and the picture is drawn from the words."""
    if ctx.lacks(i, stage, "image reference", SD_CORE + ["LoadImage", "CLIPVisionLoader", "CLIPVisionEncode",
                                                         "EmptyLatentImage"],
                 "ComfyUI core nodes CLIPVisionEncode + StyleModelApply (Redux), or packs such as "
                 "ComfyUI_IPAdapter_plus"):
        return
    before = set(ctx.b.prompt)
    follower = ctx.later(i, stage, SAMPLING_KINDS)
    sd = ctx.sd()
    how = _reference_route(ctx, sd)
    if how is None and follower is None and "VAEEncode" in ctx.registry:
        _reference_as_start(ctx, i, stage, state, sd, before)
        return
    if how is None:
        ctx.miss(i, stage, f"no installed model applies a reference image to {sd.checkpoint}: Redux needs a style "
                 f"model ({DOWNLOADS[('style_models', 'redux')]}) with a SigLIP vision model, SDXL's unCLIP route "
                 "needs the ViT-bigG vision model (clip_vision_g.safetensors); the draft draws from the words",
                 "install one of those, or packs such as ComfyUI_IPAdapter_plus for SD1.5/SDXL")
        if follower is None:
            _txt2img(ctx, stage, state)
        return
    route, vision, style = how
    image = ctx.image_in(i, stage, state, use_state=False) if stage.image or state.image is None else state.image
    encoded = ctx.b.add("CLIPVisionEncode", clip_vision=[ctx.once("CLIPVisionLoader", clip_name=vision), 0],
                        image=image, crop="center")
    positive, negative = ctx.prompts(follower or stage, state, sd)
    if route == "redux":
        applied = ctx.b.add("StyleModelApply", conditioning=positive,
                            style_model=[ctx.once("StyleModelLoader", style_model_name=style), 0],
                            clip_vision_output=[encoded, 0], strength=1.0, strength_type="multiply")
        what = f"reference image via Redux ({style})"
    else:
        applied = ctx.b.add("unCLIPConditioning", conditioning=positive, clip_vision_output=[encoded, 0],
                            strength=1.0, noise_augmentation=0.0)
        what = f"reference image via unCLIPConditioning ({vision}, SDXL revision)"
    state.positive, state.negative = [applied, 0], negative
    if follower is None:
        _txt2img(ctx, stage, state)
    ctx.cover(i, stage, what, _new(ctx, before), f"reference-{route}")


REFERENCE_START_DENOISE = 0.8  # high enough to draw the words' subject, low enough to keep the palette


def _reference_as_start(ctx: Ctx, i: int, stage: Stage, state: ChainState, sd: SD, before: set[str]) -> None:
    """No model here can read a reference image (no IPAdapter, Redux or unCLIP): start the picture from the
    reference instead (img2img at a high denoise), which carries its colours, light and composition into a
    picture of what the words describe. Said plainly in the notes: it is not a learned style transfer."""
    image = ctx.image_in(i, stage, state, use_state=False) if stage.image or state.image is None else state.image
    positive, negative = ctx.prompts(stage, state, sd)
    latent = ctx.b.add("VAEEncode", pixels=image, vae=sd.vae)
    denoise = stage.denoise if stage.denoise is not None else REFERENCE_START_DENOISE
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, [latent, 0], denoise))
    ctx.notes.append(f"No image-prompt model is installed for {sd.checkpoint} (IPAdapter, Redux or an unCLIP "
                     f"vision model), so the reference starts the picture (img2img at denoise {denoise}): it "
                     "carries the reference's colours, light and composition, not a learned style. Packs such "
                     "as ComfyUI_IPAdapter_plus transfer style itself.")
    ctx.cover(i, stage, f"reference image as the starting picture (img2img at denoise {denoise})",
              _new(ctx, before), "reference-start")


def _reference_route(ctx: Ctx, sd: SD) -> tuple[str, str, str] | None:
    """("redux", vision, style model) or ("unclip", vision, "") from the installed (or answered) files."""
    style = ctx.answers.get("style_model") or ctx.binder.find("style_models", need=["redux"]) or \
        ctx.binder.find("style_models")
    if style and "StyleModelLoader" in ctx.registry and "StyleModelApply" in ctx.registry:
        vision = ctx.answers.get("clip_vision") or ctx.binder.find("clip_vision", need=["sigclip|siglip"]) or \
            ctx.binder.find("clip_vision")
        if vision:
            if sd.family != "flux":
                ctx.notes.append(f"The reference uses Redux (a Flux style model) with {sd.checkpoint}; for SD1.5/"
                                 "SDXL checkpoints IPAdapter (ComfyUI_IPAdapter_plus) is the usual choice.")
            return "redux", vision, style
    if sd.family == "sdxl" and "unCLIPConditioning" in ctx.registry:
        vision = ctx.binder.find("clip_vision", need=["clip_vision_g|vit-bigg|vit_bigg|bigg"])
        if vision:
            return "unclip", vision, ""
    return None


# ---- instruction edit -------------------------------------------------------------------------------------------
def edit(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """An instruction edit with Flux Kontext or Qwen-Image-Edit when such a model is installed; otherwise
    img2img with the instruction as the prompt (said in the notes)."""
    kontext = ctx.binder.find("diffusion_models", need=["kontext"])
    qwen = ctx.binder.find("diffusion_models", need=["qwen_image_edit|qwen-image-edit"])
    kontext_nodes = ["UNETLoader", "DualCLIPLoader", "VAELoader", "FluxKontextImageScale", "ReferenceLatent",
                     "FluxGuidance", "VAEEncode", "KSampler", "VAEDecode", "CLIPTextEncode", "LoadImage"]
    qwen_nodes = ["UNETLoader", "CLIPLoader", "VAELoader", "TextEncodeQwenImageEdit", "VAEEncode", "KSampler",
                  "VAEDecode", "LoadImage"]
    if kontext and all(n in ctx.registry for n in kontext_nodes):
        _kontext(ctx, i, stage, state, kontext)
    elif qwen and all(n in ctx.registry for n in qwen_nodes):
        _qwen_edit(ctx, i, stage, state, qwen)
    else:
        ctx.notes.append("No instruction-edit model (Flux Kontext, Qwen-Image-Edit) is installed: the edit is "
                         "drafted as img2img with the instruction as the prompt.")
        img2img(ctx, i, stage, state)


def _kontext(ctx: Ctx, i: int, stage: Stage, state: ChainState, unet: str) -> None:
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    model = [ctx.once("UNETLoader", unet_name=unet, weight_dtype="default"), 0]
    clip_l = ctx.binder.bind("clip_l", "text_encoders", "CLIP-L text encoder", tag="clip_l", need=["clip_l"])
    t5 = ctx.binder.bind("t5xxl", "text_encoders", "T5-XXL text encoder", tag="t5xxl", need=["t5xxl"])
    clip = [ctx.once("DualCLIPLoader", clip_name1=clip_l, clip_name2=t5, type="flux"), 0]
    vae = [ctx.once("VAELoader", vae_name=ctx.binder.bind("flux_vae", "vae", "Flux VAE (ae.safetensors)", tag="flux",
                                                            need=["ae.|flux"])), 0]
    scaled = ctx.b.add("FluxKontextImageScale", image=image)
    latent = [ctx.b.add("VAEEncode", pixels=[scaled, 0], vae=vae), 0]
    sd = SD(model, clip, vae, "flux", unet)
    text = ctx.encode(sd, positive_text(stage))
    positive = [ctx.b.add("FluxGuidance", conditioning=[ctx.b.add("ReferenceLatent", conditioning=text,
                                                                     latent=latent), 0], guidance=2.5), 0]
    negative = ctx.encode(sd, negative_text(stage, "flux"), negative=True)
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, latent, 1.0))
    ctx.cover(i, stage, f"instruction edit with Flux Kontext ({unet})", _new(ctx, before), "edit-kontext")


def _qwen_edit(ctx: Ctx, i: int, stage: Stage, state: ChainState, unet: str) -> None:
    before = set(ctx.b.prompt)
    image = ctx.image_in(i, stage, state)
    model = [ctx.once("UNETLoader", unet_name=unet, weight_dtype="default"), 0]
    encoder = ctx.binder.bind("text_encoder", "text_encoders", "Qwen2.5-VL text encoder", tag="qwen_vl",
                              need=["qwen"])
    clip = [ctx.once("CLIPLoader", clip_name=encoder, type="qwen_image"), 0]
    vae = [ctx.once("VAELoader", vae_name=ctx.binder.bind("qwen_vae", "vae", "Qwen-Image VAE", tag="qwen",
                                                            need=["qwen"])), 0]
    sd = SD(model, clip, vae, "qwen", unet)
    positive = [ctx.b.add("TextEncodeQwenImageEdit", clip=clip, prompt=positive_text(stage), vae=vae, image=image), 0]
    negative = [ctx.b.add("TextEncodeQwenImageEdit", clip=clip, prompt=negative_text(stage, "qwen"), vae=vae,
                          image=image), 0]
    latent = [ctx.b.add("VAEEncode", pixels=image, vae=vae), 0]
    ctx.decode(state, sd, ctx.sample(state, sd, positive, negative, latent, 1.0))
    ctx.cover(i, stage, f"instruction edit with Qwen-Image-Edit ({unet})", _new(ctx, before), "edit-qwen")


# ---- video --------------------------------------------------------------------------------------------------
WAN_TASK = {"t2v": "t2v", "i2v": "i2v", "flf2v": "flf2v", "v2v": "vace"}
WAN_NODE = {"t2v": "EmptyHunyuanLatentVideo", "i2v": "WanImageToVideo", "flf2v": "WanFirstLastFrameToVideo",
            "vace": "WanVaceToVideo"}
WAN_NEED = {"t2v": ["wan", "t2v|ti2v"], "i2v": ["wan", "i2v"], "flf2v": ["wan", "flf2v"], "vace": ["wan", "vace"]}
WAN_AVOID = {"t2v": ("vace",), "i2v": ("flf2v",), "flf2v": (), "vace": ()}


def video(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Text/image/first-last-frame/video → video with the installed family: Wan (default), LTX-Video or SVD."""
    family = _video_family(ctx, stage)
    if family == "ltxv":
        _ltxv(ctx, i, stage, state)
    elif family == "svd":
        _svd(ctx, i, stage, state)
    else:
        _wan(ctx, i, stage, state)


def _video_family(ctx: Ctx, stage: Stage) -> str:
    hint = stage.model_hint or ctx.binder.hint
    ltx_ok, svd_ok = stage.kind in ("t2v", "i2v"), stage.kind == "i2v"
    if hint == "ltxv" and ltx_ok or hint == "svd" and svd_ok or hint == "wan":
        return hint
    if ctx.binder.find("diffusion_models", need=["wan"]):
        return "wan"
    if ltx_ok and ctx.binder.find("checkpoints", need=["ltx"]):
        return "ltxv"
    if svd_ok and ctx.binder.find("checkpoints", need=["svd"]):
        return "svd"
    return "wan"


def _length(stage: Stage, fps: float, step: int, default: int) -> int:
    """Frames: as stated, or seconds × fps, rounded to the step × k + 1 lengths the video latents take."""
    frames = stage.frames or (round(stage.seconds * fps) + 1 if stage.seconds else default)
    if step <= 1:
        return max(1, frames)
    return max(1, round((frames - 1) / step)) * step + 1


def _video_size(stage: Stage, width: int, height: int, step: int) -> tuple[int, int]:
    return _round(stage.width or width, step), _round(stage.height or height, step)


def _frames_out(ctx: Ctx, state: ChainState, sd: SD, samples: Ref, fps: float | Ref) -> None:
    keep_image(ctx, state)
    state.frames = [ctx.b.add("VAEDecode", samples=samples, vae=sd.vae), 0]
    state.fps, state.image, state.latent, state.image_load = fps, None, None, None
    state.audio = None  # generated frames no longer match a loaded video's sound


def keep_image(ctx: Ctx, state: ChainState) -> None:
    """Save the picture a video stage animates when an earlier stage made it (generated, redrawn, upscaled):
    who asks for a picture and then a video of it wants both. A file loaded as is is not saved again."""
    if state.image is not None and state.image_load is None and "SaveImage" in ctx.registry:
        ctx.b.add("SaveImage", images=state.image, filename_prefix="NodeWeaver/image")


def _wan(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    task = WAN_TASK[stage.kind]
    needs = ["UNETLoader", "CLIPLoader", "VAELoader", "CLIPTextEncode", "KSampler", "VAEDecode", WAN_NODE[task]]
    needs += {"i2v": ["LoadImage"], "flf2v": ["LoadImage"], "vace": ["LoadVideo", "GetVideoComponents",
                                                                    "TrimVideoLatent"]}.get(task, [])
    if ctx.lacks(i, stage, f"Wan {task} video generation", needs):
        return
    dedicated = ctx.answers.get("video_model") or ctx.binder.find("diffusion_models", need=WAN_NEED[task],
                                                                  avoid=WAN_AVOID[task])
    if task == "vace" and not dedicated and _frames_v2v_ok(ctx):
        _v2v_frames(ctx, i, stage, state)
        return
    before = set(ctx.b.prompt)
    b, bind = ctx.b, ctx.binder.bind
    unet = dedicated or ""
    if task == "flf2v" and not dedicated:  # Wan's i2v models take a first and last frame too (the 2.2 template)
        unet = ctx.binder.find("diffusion_models", need=["wan", "i2v"], avoid=("ti2v", "flf2v")) or ""
        if unet:
            ctx.notes.append(f"No Wan first-last-frame model is installed: the draft uses the i2v model {unet}; "
                             f"{DOWNLOADS[('diffusion_models', 'wan-flf2v')]} follows both frames more closely.")
    unet = unet or bind("video_model", "diffusion_models", f"Wan {task} video model", tag=f"wan-{task}",
                        need=WAN_NEED[task], avoid=WAN_AVOID[task], task=stage.kind)
    encoder = bind("text_encoder", "text_encoders", "UMT5-XXL text encoder Wan uses", tag="umt5", need=["umt5"])
    v22 = "5b" in unet.lower() and ("2.2" in unet or "2_2" in unet)
    vae = [ctx.once("VAELoader", vae_name=bind("video_vae", "vae", "Wan VAE", tag="wan22" if v22 else "wan",
                                                  need=["wan2.2|wan_2.2" if v22 else "wan_2.1|wan2.1|wan_vae"])), 0]
    model = [ctx.once("UNETLoader", unet_name=unet, weight_dtype="default"), 0]
    if "ModelSamplingSD3" in ctx.registry:
        model = [ctx.once("ModelSamplingSD3", model=model, shift=8.0), 0]
    sd = SD(model, [ctx.once("CLIPLoader", clip_name=encoder, type="wan"), 0], vae, "wan", unet)
    positive, negative = ctx.prompts(stage, state, sd)
    width, height = _video_size(stage, 832, 480, 16)
    fps = stage.fps or 16.0
    length = _length(stage, fps, 4, 81)
    common = {"positive": positive, "negative": negative, "vae": vae, "width": width, "height": height,
              "length": length, "batch_size": 1}
    if task == "t2v":
        latent = [b.add("EmptyHunyuanLatentVideo", width=width, height=height, length=length, batch_size=1), 0]
    elif task == "vace":
        positive, negative, latent = _vace(ctx, i, stage, state, common)
    else:
        node = b.add(WAN_NODE[task], **common, **_wan_images(ctx, i, stage, state, task, unet))
        positive, negative, latent = [node, 0], [node, 1], [node, 2]
    samples = ctx.sample(state, sd, positive, negative, latent, 1.0, sampler="uni_pc", scheduler="simple")
    if task == "vace":
        samples = [b.add("TrimVideoLatent", samples=samples, trim_amount=[latent[0], 3]), 0]
    _frames_out(ctx, state, sd, samples, fps)
    ctx.cover(i, stage, f"Wan {task} {width}x{height}, {length} frames at {fps:g} fps with {unet}",
              _new(ctx, before), f"video-wan-{task}")


def _wan_images(ctx: Ctx, i: int, stage: Stage, state: ChainState, task: str, unet: str) -> dict[str, Any]:
    """The start (and end) images of i2v/flf2v, with their CLIP-vision encodings for Wan 2.1 models."""
    start = ctx.image_in(i, stage, state)
    images: dict[str, Any] = {"start_image": start}
    if task == "flf2v":
        end_name = str(stage.extra.get("end_image") or stage.extra.get("last_image") or "")
        images["end_image"] = ctx.image_in(i, stage, state, slot="end_image", name=end_name, use_state=False)
    wan21 = "2.1" in unet or "2_1" in unet
    if wan21 and "CLIPVisionLoader" in ctx.registry and "CLIPVisionEncode" in ctx.registry:
        name = ctx.binder.bind("clip_vision", "clip_vision", "CLIP vision model (clip_vision_h) Wan 2.1 uses",
                               tag="clip_vision_h", need=["clip_vision_h|vit-h|vit_h"], task=stage.kind)
        vision = [ctx.once("CLIPVisionLoader", clip_name=name), 0]
        encode = {k: [ctx.b.add("CLIPVisionEncode", clip_vision=vision, image=v, crop="none"), 0]
                  for k, v in images.items()}
        if task == "i2v":
            images["clip_vision_output"] = encode["start_image"]
        else:
            images["clip_vision_start_image"] = encode["start_image"]
            images["clip_vision_end_image"] = encode["end_image"]
    return images


def video_in(ctx: Ctx, stage: Stage, state: ChainState) -> Ref:
    """The frames a video stage works on: the chain's, else its video file's (LoadVideo → GetVideoComponents,
    whose frame rate and sound the chain keeps), else a question (the draft loads the named file)."""
    if state.frames is not None:
        return state.frames
    videos = [x for x in ctx.inputs if x.lower().endswith(VIDEO_EXT)]
    name = stage.video if stage.video in ctx.inputs else ctx.answers.get("video")
    if not name:
        ctx.ask(Question(f"{stage.video} is not in the input folder. Which video should I use?" if stage.video
                         else f"Which video should the {stage.kind} step use?", videos, "video"))
        name = stage.video or (videos[0] if videos else "input.mp4")
    parts = ctx.b.add("GetVideoComponents", video=[ctx.once("LoadVideo", file=name), 0])
    state.fps, state.audio = [parts, 2], [parts, 1]
    return [parts, 0]


def _frames_v2v_ok(ctx: Ctx) -> bool:
    """Frame-by-frame img2img is possible: an image checkpoint and the nodes to load, encode and sample."""
    needs = SD_CORE + ["LoadVideo", "GetVideoComponents", "VAEEncode"]
    checkpoints = [f for f in ctx.binder.files("checkpoints") if family_of(f) not in ("ltxv", "svd", "wan")]
    return all(n in ctx.registry for n in needs) and bool(checkpoints or ctx.parsed.checkpoint)


def _v2v_frames(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Video → video without a Wan VACE model: every frame redrawn by img2img with the image checkpoint (the
    frames as one batch, one seed), at the video's own frame rate; said in the notes, as frames may flicker."""
    before = set(ctx.b.prompt)
    frames = video_in(ctx, stage, state)
    sd = ctx.sd()
    positive, negative = ctx.prompts(stage, state, sd)
    latent = ctx.b.add("VAEEncode", pixels=frames, vae=sd.vae)
    denoise = stage.denoise if stage.denoise is not None else 0.5
    samples = ctx.sample(state, sd, positive, negative, [latent, 0], denoise)
    state.frames = [ctx.b.add("VAEDecode", samples=samples, vae=sd.vae), 0]
    if stage.fps:
        state.fps = stage.fps
    ctx.notes.append(f"No Wan VACE model is installed: the video is redrawn frame by frame with {sd.checkpoint} "
                     f"(img2img at denoise {denoise}), which may flicker; "
                     f"{DOWNLOADS[('diffusion_models', 'wan-vace')]} keeps the frames consistent.")
    ctx.cover(i, stage, f"video to video, each frame redrawn (img2img at denoise {denoise}) with {sd.checkpoint}",
              _new(ctx, before), "video-frames-img2img")


def _vace(ctx: Ctx, i: int, stage: Stage, state: ChainState, common: dict) -> tuple[Ref, Ref, Ref]:
    """Video → video with Wan VACE: the input video's frames (or the chain's) as the control video."""
    control = video_in(ctx, stage, state)
    extra: dict[str, Any] = {"control_video": control}
    if stage.image:
        extra["reference_image"] = ctx.image_in(i, stage, state, use_state=False)
    node = ctx.b.add("WanVaceToVideo", **common, strength=1.0, **extra)
    return [node, 0], [node, 1], [node, 2]


def _ltxv(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    cond = "EmptyLTXVLatentVideo" if stage.kind == "t2v" else "LTXVImgToVideo"
    needs = ["CheckpointLoaderSimple", "CLIPLoader", "CLIPTextEncode", "LTXVConditioning", "KSampler", "VAEDecode",
             cond] + (["LoadImage"] if stage.kind == "i2v" else [])
    if ctx.lacks(i, stage, f"LTX-Video {stage.kind}", needs):
        return
    before = set(ctx.b.prompt)
    name = ctx.binder.bind("video_model", "checkpoints", "LTX-Video checkpoint", tag="ltxv", need=["ltx"],
                           task=stage.kind)
    encoder = ctx.binder.bind("text_encoder", "text_encoders", "T5-XXL text encoder LTX-Video uses", tag="t5xxl",
                              need=["t5xxl"])
    loader = ctx.once("CheckpointLoaderSimple", ckpt_name=name)
    sd = SD([loader, 0], [ctx.once("CLIPLoader", clip_name=encoder, type="ltxv"), 0], [loader, 2], "ltxv", name)
    positive, negative = ctx.prompts(stage, state, sd)
    width, height = _video_size(stage, 768, 512, 32)
    fps = stage.fps or 24.0
    length = _length(stage, fps, 8, 97)
    if stage.kind == "t2v":
        latent = [ctx.b.add(cond, width=width, height=height, length=length, batch_size=1), 0]
    else:
        node = ctx.b.add(cond, positive=positive, negative=negative, vae=sd.vae,
                         image=ctx.image_in(i, stage, state), width=width, height=height, length=length,
                         batch_size=1, strength=1.0)
        positive, negative, latent = [node, 0], [node, 1], [node, 2]
    conditioned = ctx.b.add("LTXVConditioning", positive=positive, negative=negative, frame_rate=float(fps))
    samples = ctx.sample(state, sd, [conditioned, 0], [conditioned, 1], latent, 1.0, scheduler="simple")
    _frames_out(ctx, state, sd, samples, fps)
    ctx.cover(i, stage, f"LTX-Video {stage.kind} {width}x{height}, {length} frames with {name}",
              _new(ctx, before), f"video-ltxv-{stage.kind}")


def _svd(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    needs = ["ImageOnlyCheckpointLoader", "VideoLinearCFGGuidance", "SVD_img2vid_Conditioning", "KSampler",
             "VAEDecode", "LoadImage"]
    if ctx.lacks(i, stage, "Stable Video Diffusion image-to-video", needs):
        return
    before = set(ctx.b.prompt)
    name = ctx.binder.bind("video_model", "checkpoints", "Stable Video Diffusion checkpoint", tag="svd",
                           need=["svd"], task="i2v")
    loader = ctx.once("ImageOnlyCheckpointLoader", ckpt_name=name)
    model = [ctx.b.add("VideoLinearCFGGuidance", model=[loader, 0], min_cfg=1.0), 0]
    fps = stage.fps or 6.0
    frames = _length(stage, fps, 1, 14)
    width, height = _video_size(stage, 1024, 576, 8)
    cond = ctx.b.add("SVD_img2vid_Conditioning", clip_vision=[loader, 1], init_image=ctx.image_in(i, stage, state),
                     vae=[loader, 2], width=width, height=height, video_frames=frames, motion_bucket_id=127,
                     fps=max(1, int(round(fps))), augmentation_level=0.0)
    sd = SD(model, [loader, 1], [loader, 2], "svd", name)
    samples = ctx.sample(state, sd, [cond, 0], [cond, 1], [cond, 2], 1.0, scheduler="karras")
    _frames_out(ctx, state, sd, samples, fps)
    ctx.cover(i, stage, f"Stable Video Diffusion i2v, {frames} frames with {name}", _new(ctx, before), "video-svd")


def frames_through(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> bool:
    """For a video step no core node provides (interpolation): keep the chain's frames, or load the named
    video's, so the draft still loads and saves the video and the missing node slots in before the save.
    True when the chain now holds frames."""
    if state.frames is not None:
        return True
    if not stage.video or any(n not in ctx.registry for n in ("LoadVideo", "GetVideoComponents", "CreateVideo",
                                                                "SaveVideo")):
        return False
    state.frames = video_in(ctx, stage, state)
    if "video-load" not in ctx.stages_used:
        ctx.stages_used.append("video-load")
    return True


# ---- text: LLM steps, templates, regex ----------------------------------------------------------------------
PROMPT_WRITER = ("You write prompts for text-to-image models. Turn the user's idea into one detailed English image "
                 "prompt (subject, setting, light, style). Answer with the prompt only.")
IMAGE_CONSUMERS = SAMPLING_KINDS + ("controlnet", "reference", "hires", "t2v", "i2v", "flf2v", "v2v")


def _chat(ctx: Ctx, system: str, prompt: Any, temperature: float = 0.7, max_tokens: int = 1024,
          json_output: bool = False) -> str:
    model = ctx.parsed.llm_model or ("qwen-max" if ctx.parsed.lang == "zh" else "gpt-4o-mini")
    provider = "dashscope" if model.startswith("qwen") else "openai-compatible"
    return ctx.b.add("LLMChat", provider=provider, model=model, system_prompt=system, prompt=prompt,
                     temperature=temperature, max_tokens=max_tokens, seed=0, json_output=json_output)


def _source_text(ctx: Ctx, stage: Stage, state: ChainState) -> Any:
    """The text a text step works on: the chain's, a named text file (LoadText), or the stage's words."""
    if state.text is not None:
        return state.text
    file = stage.extra.get("text_file") or stage.extra.get("file")
    if file and "LoadText" in ctx.registry:
        return [ctx.once("LoadText", path=str(file)), 0]
    return stage.prompt or stage.text


def llm_write(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """An LLM writes text; when an image or video stage follows in the branch, its output is that stage's
    prompt (by link into CLIPTextEncode.text)."""
    if ctx.lacks(i, stage, "an LLM step", ["LLMChat"]):
        return
    feeds = ctx.later(i, stage, IMAGE_CONSUMERS)
    if not feeds and ctx.later(i, stage, ("regex",)):
        # a regex reads what the LLM answers: ask for JSON, at a low temperature, so the pattern finds its item
        node = _chat(ctx, "Answer with JSON only.", stage.prompt or stage.text, temperature=0.2, max_tokens=512,
                     json_output=True)
        state.text = [node, 0]
        ctx.cover(i, stage, "an LLM answers in JSON", [node], "llm-json")
        return
    system = PROMPT_WRITER if feeds else "You are a careful writer. Answer with the requested text only."
    node = _chat(ctx, system, stage.prompt or stage.text, max_tokens=400 if feeds else 1024)
    if feeds:
        state.prompt_link = [node, 0]
        if _saves_text(ctx, i, stage):
            state.text = [node, 0]  # "…, and save the description as a text file too": SaveText at the end
        ctx.cover(i, stage, f"an LLM writes the prompt for the {feeds.kind} step", [node], "llm-prompt")
    else:
        state.text = [node, 0]
        ctx.cover(i, stage, "an LLM writes the text", [node], "llm-write")


def _saves_text(ctx: Ctx, i: int, stage: Stage) -> bool:
    """A later save step of the branch that asks for the LLM's words as a file, not (only) the picture."""
    return any(s.kind == "save" and s.branch == stage.branch and
               (str(s.extra.get("filename", "")).endswith(".txt") or
                re.search(r"\btext\b|\btxt\b|description|\bprompt|\bwords\b|描述|文字|文本|提示词", s.text, re.I))
               for s in ctx.parsed.stages[i + 1:])


def caption(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """A caption or slogan for the picture: a parallel text branch with its own SaveText."""
    if i in ctx.covered or ctx.lacks(i, stage, "an LLM caption", ["LLMChat", "SaveText"]):
        return  # one caption even when the branch runs once per seed
    picture = next((s for s in ctx.parsed.stages if s.branch == stage.branch and s.kind in IMAGE_CONSUMERS), None)
    subject = stage.prompt or (positive_text(picture) if picture else stage.text)
    chat = _chat(ctx, "You write short marketing copy. Answer with one line.",
                 f"Write a one-line caption for: {subject}", temperature=0.8, max_tokens=100)
    save = ctx.b.add("SaveText", text=[chat, 0], filename_prefix="NodeWeaver/caption", format="txt")
    ctx.cover(i, stage, "an LLM writes a caption, saved as text", [chat, save], "llm-caption")


def llm_text(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    """Summarize or translate the chain's text (or a text file, or the stage's words) with an LLM."""
    if ctx.lacks(i, stage, f"an LLM {stage.kind} step", ["LLMChat"]):
        return
    before = set(ctx.b.prompt)
    source = _source_text(ctx, stage, state)
    if stage.kind == "translate":
        language = stage.language or ("English" if ctx.parsed.lang == "zh" else "Chinese")
        system, what = f"Translate the text into {language}. Answer with the translation only.", f"translate into {language}"
    else:
        system, what = "Summarize the text. Answer with the summary only.", "summarize"
    state.text = [_chat(ctx, system, source), 0]
    ctx.cover(i, stage, f"an LLM steps in: {what}", _new(ctx, before), f"llm-{stage.kind}")


def text_template(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    if ctx.lacks(i, stage, "text templates", ["TextTemplate"]):
        return
    template = str(stage.extra.get("template") or stage.prompt or stage.text)
    values = stage.extra.get("values")
    if not isinstance(values, str):
        names = list(dict.fromkeys(re.findall(r"\{(\w+)\}", template)))
        given = values if isinstance(values, dict) else {}
        values = "\n".join(f"{n}={given.get(n, n)}" for n in names)
    node = ctx.b.add("TextTemplate", template=template, values=values)
    state.text = [node, 0]
    ctx.cover(i, stage, "fill the text template", [node], "text-template")


def regex(ctx: Ctx, i: int, stage: Stage, state: ChainState) -> None:
    if ctx.lacks(i, stage, "regular-expression extraction", ["RegexExtract"]):
        return
    before = set(ctx.b.prompt)
    pattern = str(stage.extra.get("pattern") or r'\[\s*"([^"]+)"')
    node = ctx.b.add("RegexExtract", string=_source_text(ctx, stage, state), regex_pattern=pattern,
                     mode="First Group", case_insensitive=True, multiline=False, dotall=True, group_index=1)
    state.text = [node, 0]
    ctx.cover(i, stage, f"extract with the regex {pattern}", _new(ctx, before), "regex")
