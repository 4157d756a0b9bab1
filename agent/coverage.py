"""Coverage of a request by any workflow: which asked-for stages a graph provides, judged from its nodes.

The offline builder reports what it built stage by stage; an LLM-drafted (or hand-edited) workflow comes with
no such account. `audit` gives one: the request read into stages (the same reader the offline planner uses),
and for each stage whether the workflow holds a node that does that kind of work — ComfyUI's core classes
and those of the packs people commonly use. A stage no node provides is listed as not covered, so an LLM
plan that quietly drops "then upscale 2x" is reported `partial` like an offline one would be.
"""

from __future__ import annotations

from typing import Any

from agent.offline.spec import ParsedRequest

SAMPLERS = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
IMAGE_APIS = frozenset({"DashScopeImageSynthesis", "OpenAIDalle2", "OpenAIDalle3", "OpenAIGPTImage1",
                        "StabilityStableImageUltraNode", "StabilityStableImageSD_3_5Node", "IdeogramV3",
                        "FluxProUltraImageNode", "RecraftTextToImageNode", "GeminiImageNode"})
LLM_NODES = frozenset({"LLMChat", "OpenAIChatNode", "GeminiNode", "ClaudeNode"})
VIDEO_LATENTS = frozenset({"EmptyHunyuanLatentVideo", "EmptyLTXVLatentVideo", "EmptyMochiLatentVideo",
                           "EmptyCosmosLatentVideo", "Wan22ImageToVideoLatent", "WanVaceToVideo"})
IMAGE_TO_VIDEO = frozenset({"WanImageToVideo", "LTXVImgToVideo", "SVD_img2vid_Conditioning",
                            "WanFunInpaintToVideo", "CosmosImageToVideoLatent", "HunyuanImageToVideo",
                            "WanCameraImageToVideo", "Wan22ImageToVideoLatent", "WanVaceToVideo"})

# stage kind → node classes any one of which does that kind of work
PROVIDERS: dict[str, frozenset[str]] = {
    "generate": SAMPLERS | IMAGE_APIS,
    "img2img": frozenset({"VAEEncode"}),
    "restyle": frozenset({"VAEEncode", "StyleModelApply", "ReferenceLatent"}),
    "edit": frozenset({"TextEncodeQwenImageEdit", "TextEncodeQwenImageEditPlus", "ReferenceLatent",
                       "FluxKontextImageScale", "VAEEncode"}),
    "inpaint": frozenset({"VAEEncodeForInpaint", "InpaintModelConditioning", "SetLatentNoiseMask"}),
    "remove": frozenset({"VAEEncodeForInpaint", "InpaintModelConditioning", "SetLatentNoiseMask"}),
    "replace": frozenset({"VAEEncodeForInpaint", "InpaintModelConditioning", "SetLatentNoiseMask"}),
    "outpaint": frozenset({"ImagePadForOutpaint"}),
    "upscale": frozenset({"ImageUpscaleWithModel", "ImageScaleBy", "ImageScale", "ImageScaleToTotalPixels",
                          "UltimateSDUpscale", "LatentUpscale", "LatentUpscaleBy"}),
    "hires": frozenset({"LatentUpscale", "LatentUpscaleBy", "UltimateSDUpscale"}),
    "controlnet": frozenset({"ControlNetApply", "ControlNetApplyAdvanced", "ControlNetApplySD3",
                             "ACN_AdvancedControlNetApply", "WanFunControlToVideo"}),
    "reference": frozenset({"StyleModelApply", "unCLIPConditioning", "CLIPVisionEncode", "ReferenceLatent",
                            "IPAdapter", "IPAdapterAdvanced", "IPAdapterUnifiedLoader"}),
    "t2v": VIDEO_LATENTS,
    "i2v": IMAGE_TO_VIDEO,
    "v2v": frozenset({"LoadVideo", "VHS_LoadVideo", "WanVaceToVideo"}),
    "flf2v": frozenset({"WanFirstLastFrameToVideo", "WanFunInpaintToVideo"}),
    "interpolate": frozenset({"RIFE VFI", "FILM VFI", "GMFSS Fortuna VFI", "IFRNet VFI", "AMT VFI"}),
    "llm_write": LLM_NODES,
    "caption": LLM_NODES,
    "summarize": LLM_NODES,
    "translate": LLM_NODES,
    "describe": frozenset({"Florence2Run", "JoyCaption", "WD14Tagger|pysssss"}),
    "text_template": frozenset({"TextTemplate"}),
    "regex": frozenset({"RegexExtract", "RegexMatch"}),
    "invert": frozenset({"ImageInvert"}),
    "face_restore": frozenset({"FaceRestoreWithModel", "FaceDetailer", "ReActorFaceSwap", "ReActorRestoreFace"}),
    "remove_background": frozenset({"Image Rembg (Remove Background)", "BiRefNetRMBG", "RMBG",
                                    "LayerMask: RemBgUltra", "InspyrenetRembg"}),
    "audio": frozenset({"SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "EmptyLatentAudio"}),
    "3d": frozenset({"SaveGLB", "Hunyuan3Dv2Conditioning", "VoxelToMesh", "VAEDecodeHunyuan3D"}),
}


def _entry(index: int, kind: str, what: str, nodes: list[str], reason: str = "") -> dict[str, Any]:
    return {"stage": index, "kind": kind, "what": what, "nodes": nodes, "reason": reason, "suggestion": ""}


def audit(parsed: ParsedRequest, workflow: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(covered, not_covered) for each stage of the request, judged from the workflow's node classes.

    A `save` stage is covered by any output node; `unknown` clauses are never covered: nobody knows what
    would."""
    by_class: dict[str, list[str]] = {}
    for node_id, node in (workflow or {}).items():
        if isinstance(node, dict):
            by_class.setdefault(str(node.get("class_type")), []).append(str(node_id))
    covered: list[dict] = []
    not_covered: list[dict] = []
    for index, stage in enumerate(parsed.stages):
        what = stage.text.strip() or stage.kind
        if stage.kind == "save":
            nodes = [n for cls, ids in by_class.items() if cls.startswith(("Save", "Preview")) for n in ids]
        else:
            nodes = [n for cls in PROVIDERS.get(stage.kind, frozenset()) for n in by_class.get(cls, [])]
        if nodes:
            covered.append(_entry(index, stage.kind, what, sorted(nodes, key=_node_order)))
        else:
            reason = ("not understood as a workflow step" if stage.kind == "unknown"
                      else f"the workflow has no node that does {stage.kind.replace('_', ' ')}")
            not_covered.append(_entry(index, stage.kind, what, [], reason))
    return covered, not_covered


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)
