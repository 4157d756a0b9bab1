"""Deriving what a template does from the template itself.

Why from the workflow and not only from the index tags: tags are written by hand, partly missing and in
marketing words ("Image Edit", "Int8"); the node classes and the files a workflow loads and saves say what it
does. The rules, in order:

* media in: the loader nodes it uses (LoadImage, LoadVideo, LoadAudio, Load3D) and the index's io inputs;
  media out: its save/preview nodes and the index's io outputs.
* a specific task is recognised by its nodes: inpaint (inpaint conditioning/encoding, latent noise masks),
  outpaint (image padding for outpaint), controlnet (controlnet loaders/appliers; the kind from the
  preprocessor nodes and the controlnet model names), upscale (upscale models and upscale nodes), edit
  (image-edit text encoders, Kontext/reference latents fed by an input image, *Edit* API nodes), reference
  (style models, IP-adapters, *Reference* nodes other than reference latents), flf2v (first/last-frame nodes, or two input images into
  a video), audio out, 3d out, llm (text generation with text out), api (API nodes: the registry's api_node
  flag, or the index saying the template is not open source).
* the general ones come from media in → out: t2i / i2i, t2v / i2v / v2v.
* tags only add what the nodes cannot show (e.g. an "Inpainting" tag on an API node that masks internally).
The primary task is the most specific one (see PRIMARY_ORDER); an upscale pass inside a text-to-image
template does not make it an upscale template: upscale is primary only when the input is a file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from agent.templates.model import InputFile, ModelFile, Slot, TemplateInfo
from agent.templates.naming import ui_nodes
from agent.templates.source import IndexEntry

PRIMARY_ORDER = ("outpaint", "inpaint", "controlnet", "flf2v", "edit", "v2v", "i2v", "t2v", "3d", "reference",
                 "upscale", "i2i", "t2i", "audio", "llm", "api")
LOADERS = {"LoadImage": ("image", "image"), "LoadImageMask": ("image", "mask"), "LoadImageOutput": ("image", "image"),
           "LoadVideo": ("file", "video"), "LoadAudio": ("audio", "audio"), "Load3D": ("model_file", "3d")}
IMAGE_OUT = {"SaveImage", "PreviewImage", "SaveImageAdvanced", "ImageCompare", "SaveSVGNode", "SaveAnimatedPNG",
             "MaskPreview"}
VIDEO_OUT = {"SaveVideo", "SaveWEBM", "SaveAnimatedWEBP", "CreateVideo"}
AUDIO_OUT = {"SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio", "SaveAudioAdvanced"}
MESH_OUT = {"SaveGLB", "Preview3D", "Save3D", "Preview3DAnimation", "Save3DAdvanced"}
TEXT_OUT = {"SaveText", "PreviewAny", "PreviewText"}
LOADER_DIRECTORY = {"CheckpointLoaderSimple": "checkpoints", "ImageOnlyCheckpointLoader": "checkpoints",
                    "LoraLoader": "loras", "LoraLoaderModelOnly": "loras", "VAELoader": "vae",
                    "UNETLoader": "diffusion_models", "CLIPLoader": "text_encoders",
                    "DualCLIPLoader": "text_encoders", "TripleCLIPLoader": "text_encoders",
                    "ControlNetLoader": "controlnet", "DiffControlNetLoader": "controlnet",
                    "UpscaleModelLoader": "upscale_models", "CLIPVisionLoader": "clip_vision",
                    "StyleModelLoader": "style_models", "ModelPatchLoader": "model_patches"}
MODEL_SUFFIX = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf|sft|onnx)$", re.IGNORECASE)
CONTROLNET_KINDS = ("canny", "depth", "pose", "lineart", "scribble", "normal", "tile", "seg", "union", "hed",
                    "blur", "gray")
TAG_TASKS = {"inpainting": "inpaint", "outpainting": "outpaint", "controlnet": "controlnet",
             "image upscale": "upscale", "video upscale": "upscale", "text to audio": "audio",
             "text to speech": "audio", "text to music": "audio", "image edit": "edit", "flf2v": "flf2v",
             "text generation": "llm", "llm": "llm", "style reference": "reference",
             "character reference": "reference", "reference to video": "reference"}
PRIMITIVES = {"PrimitiveInt", "PrimitiveFloat", "PrimitiveString", "PrimitiveStringMultiline", "PrimitiveBoolean"}
SLOT_INPUTS = {"width": ("width",), "height": ("height",), "length": ("length", "num_frames", "frames"),
               "fps": ("fps", "frame_rate"), "seed": ("seed", "noise_seed"), "steps": ("steps",), "cfg": ("cfg",),
               "denoise": ("denoise",), "scale": ("scale_by", "upscale_by", "scale_factor", "upscale_factor")}
PROMPT_INPUTS = ("text", "prompt", "positive_prompt", "text_g")


def _has(classes: set[str], *words: str) -> bool:
    """Some class name contains one of the words (case-insensitive)."""
    return any(w.lower() in c.lower() for c in classes for w in words)


def media(classes: set[str], index: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The kinds of media the template reads and writes."""
    io = index.get("io") if isinstance(index.get("io"), dict) else {}
    media_in = {LOADERS[c][1] for c in classes if c in LOADERS}
    media_in |= {str(x.get("mediaType")) for x in io.get("inputs") or [] if isinstance(x, dict)}
    media_out = {str(x.get("mediaType")) for x in io.get("outputs") or [] if isinstance(x, dict)}
    for kinds, kind in ((IMAGE_OUT, "image"), (VIDEO_OUT, "video"), (AUDIO_OUT, "audio"), (MESH_OUT, "3d"),
                        (TEXT_OUT, "text")):
        if classes & kinds:
            media_out.add(kind)
    media_in.discard("None")
    media_out.discard("None")
    if "mask" in media_in:
        media_in.add("image")
    return media_in, media_out


def controlnet_kinds(classes: set[str], models: list[ModelFile]) -> list[str]:
    """The control kinds, from preprocessor node names and controlnet/patch model file names."""
    names = [c.lower() for c in classes] + [m.name.lower() for m in models
                                            if m.directory in ("controlnet", "model_patches", None)]
    found = [k for k in CONTROLNET_KINDS if any(k in n for n in names)]
    if any(w in n for n in names for w in ("openpose", "dwpose")) and "pose" not in found:
        found.append("pose")
    return found


def _specific_tasks(classes: set[str], media_in: set[str], media_out: set[str], images_in: int) -> set[str]:
    found: set[str] = set()
    checks: list[tuple[str, Callable[[], bool]]] = [
        ("inpaint", lambda: _has(classes, "Inpaint", "SetLatentNoiseMask", "FluxProFill")),
        ("outpaint", lambda: _has(classes, "Outpaint", "FluxProExpand")),
        ("controlnet", lambda: _has(classes, "ControlNet", "Canny", "DiffSynthControl")),
        ("upscale", lambda: _has(classes, "Upscale", "SeedVR")),
        ("edit", lambda: _has(classes, "ImageEdit", "Kontext", "EditNode", "Edit2", "QwenImageEdit")
         or ("image" in media_in and _has(classes, "ReferenceLatent") and "image" in media_out)),
        ("reference", lambda: _has(classes, "StyleModelApply", "IPAdapter")
         or _has({c for c in classes if "ReferenceLatent" not in c}, "Reference")),
        ("flf2v", lambda: _has(classes, "FirstLast", "StartEnd", "FirstFrameLastFrame")
         or (images_in == 2 and "video" in media_out and "video" not in media_in and _has(classes, "Wan"))),
        ("llm", lambda: "text" in media_out and not media_out & {"image", "video", "audio", "3d"}
         and _has(classes, "TextGenerate", "Chat", "LLM", "Gemini", "OpenAI")),
    ]
    for task, test in checks:
        if test():
            found.add(task)
    return found


def _media_tasks(media_in: set[str], media_out: set[str]) -> set[str]:
    found: set[str] = set()
    if "3d" in media_out:
        found.add("3d")
    if "audio" in media_out and "video" not in media_out or media_in == {"audio"}:
        found.add("audio")
    if "video" in media_out:
        found.add("v2v" if "video" in media_in else "i2v" if "image" in media_in else "t2v")
    elif "image" in media_out:
        found.add("i2i" if media_in & {"image", "video"} else "t2i")
    return found


def derive_tasks(classes: set[str], index: dict[str, Any], tags: list[str], api_classes: set[str],
                 models: list[ModelFile], images_in: int) -> tuple[str, list[str], list[str]]:
    """(primary task, all tasks in PRIMARY_ORDER, controlnet kinds)."""
    media_in, media_out = media(classes, index)
    tasks = _specific_tasks(classes, media_in, media_out, images_in) | _media_tasks(media_in, media_out)
    tasks |= {TAG_TASKS[t.lower()] for t in tags if t.lower() in TAG_TASKS}
    if classes & api_classes or index.get("openSource") is False:
        tasks.add("api")
    ordered = [t for t in PRIMARY_ORDER if t in tasks]
    primary = next((t for t in ordered if t != "upscale" or media_in & {"image", "video"}), "")
    if primary in ("i2i", "v2v") and "upscale" in tasks:
        primary = "upscale"
    kinds = controlnet_kinds(classes, models) if "controlnet" in tasks else []
    return primary, ordered, kinds


def derive_models(workflow: dict[str, Any], prompt: dict[str, Any]) -> list[ModelFile]:
    """Model files: the nodes' `properties.models` (name, url, directory), then loader widget values."""
    found: dict[str, ModelFile] = {}
    for node in ui_nodes(workflow):
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        for item in props.get("models") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"] not in found:
                found[item["name"]] = ModelFile(name=item["name"], url=item.get("url") or None,
                                                directory=item.get("directory") or None)
    for node in prompt.values():
        directory = LOADER_DIRECTORY.get(node.get("class_type", ""))
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, str) and MODEL_SUFFIX.search(value) and value not in found \
                    and (directory or name.endswith("_name")):
                found[value] = ModelFile(name=value, directory=directory)
    return list(found.values())


def derive_inputs(prompt: dict[str, Any]) -> list[InputFile]:
    """The input files the template's loader nodes read."""
    out = []
    for node_id, node in prompt.items():
        loader = LOADERS.get(node.get("class_type", ""))
        value = (node.get("inputs") or {}).get(loader[0]) if loader else None
        if loader and isinstance(value, str) and value:
            out.append(InputFile(kind=loader[1], name=value, node=node_id))
    return out


TASK_WORDS = {
    "t2i": ("text to image", "文生图"), "i2i": ("image to image", "图生图"),
    "inpaint": ("inpaint", "inpainting", "局部重绘"), "outpaint": ("outpaint", "outpainting", "扩图"),
    "upscale": ("upscale", "放大", "超分"), "controlnet": ("controlnet", "控制"), "edit": ("edit", "编辑"),
    "reference": ("reference", "参考"), "t2v": ("text to video", "文生视频"), "i2v": ("image to video", "图生视频"),
    "v2v": ("video to video", "视频生视频"), "flf2v": ("first last frame", "首尾帧"),
    "audio": ("audio", "音频"), "3d": ("3d", "三维"), "llm": ("llm", "text generation", "文本生成"),
    "api": ("api",),
}
"""Words a task answers to in search (English and Chinese), so "图生视频" finds i2v templates."""


def describe(template_id: str, index: IndexEntry, workflow: dict[str, Any], prompt: dict[str, Any],
             api_classes: set[str], slots: dict[str, list[Slot]]) -> TemplateInfo:
    """One template's TemplateInfo from its index entries, its UI workflow and its API form."""
    entry, zh = index.entry, index.entry_zh
    subgraph_ids = {str(s.get("id")) for s in (workflow.get("definitions") or {}).get("subgraphs") or []
                    if isinstance(s, dict)}
    classes = {str(n.get("class_type")) for n in prompt.values()} or {
        n["type"] for n in ui_nodes(workflow) if n["type"] not in subgraph_ids}
    classes -= {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
    tags = [str(t) for t in entry.get("tags") or []]
    models = derive_models(workflow, prompt)
    images_in = sum(1 for n in prompt.values() if n.get("class_type") == "LoadImage")
    task, tasks, kinds = derive_tasks(classes, entry, tags, api_classes, models, images_in)
    zh_tags = [str(t) for t in zh.get("tags") or []]
    words = [entry.get("title", ""), zh.get("title", ""), " ".join(tags), " ".join(zh_tags), template_id,
             index.category, " ".join(w for t in tasks for w in TASK_WORDS.get(t, ())), " ".join(kinds),
             entry.get("description", ""), zh.get("description", "")]
    open_source = entry.get("openSource")
    return TemplateInfo(
        id=template_id, title=str(entry.get("title") or template_id), title_zh=str(zh.get("title") or ""),
        description=str(entry.get("description") or ""), description_zh=str(zh.get("description") or ""),
        tags=tags, category=index.category, media_type=str(entry.get("mediaType") or ""), task=task, tasks=tasks,
        controlnet_kinds=kinds, models=models, inputs=derive_inputs(prompt), slots=slots, nodes=sorted(classes),
        subgraphs=bool(subgraph_ids), open_source=open_source if isinstance(open_source, bool) else None,
        usage=int(entry.get("usage") or 0), search_text=" ".join(str(w) for w in words if w).lower())
