"""The offline planner's entry: which planner a request goes to, and the text-only flows.

Image and video requests are read into stages (agent.offline.stages) and built stage by stage for the target
catalog (agent.offline.chain), with what each stage covers or why it is not covered. Text-only requests
(LLM chains: summarise → translate → save, copywriting, JSON → regex; text templates) and Wanx image requests
keep their own small flows here. It asks when something essential is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent.builder import WorkflowBuilder
from agent.offline.extract import FILE_NAME, SEED_LIST, Facts, extract

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TEXT_EXT = (".txt", ".md", ".json", ".csv")
DASHSCOPE_SIZES_FALLBACK = "1024*1024"
BEYOND = ("video", "视频", "audio", "music", "音乐", "语音", "speech", "3d model", "mesh", "三维", "animation", "动画",
          "gif")


@dataclass
class Question:
    """A clarifying question with choices; the caller answers and planning resumes."""

    text: str
    choices: list[str] = field(default_factory=list)
    slot: str = ""


@dataclass
class OfflineResult:
    workflow: dict[str, Any] | None
    summary: str
    question: Question | None = None
    error: str | None = None
    template: str = ""
    covered: list[dict[str, Any]] = field(default_factory=list)
    not_covered: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _re(pattern: str, text: str) -> bool:
    return re.search(pattern, text, re.IGNORECASE) is not None


class Intents:
    def __init__(self, f: Facts, inputs: list[str]):
        t = f.lower
        self.beyond = any(w in t for w in BEYOND)
        self.wanx = f.has("wanx", "万相", "wanxiang") or _re(r"dashscope.{0,20}(image|picture|图)", t)
        self.llm = bool(f.llm_model) or f.has("llm", "gpt", "deepseek", "大模型", "语言模型", "summarize", "summarise",
                                               "summary", "总结", "摘要", "translate", "翻译", "caption", "文案",
                                               "slogan", "tagline", "copywriting", "chatbot", "ask an", "ask the") \
            or _re(r"写(?!实)", f.text) or _re(r"\bwrite\b", t)
        self.image_files = [x for x in f.files if x.lower().endswith(IMAGE_EXT)]
        self.text_files = [x for x in f.files if x.lower().endswith(TEXT_EXT)]
        self.invert = f.has("invert", "反相", "反色", "反转颜色", "颜色反转", "负片")
        self.pixel_upscale = bool(self.image_files) and f.has("upscale", "放大", "enlarge", "超分", "upscaling")
        self.hires = f.has("upscale the latent", "latent upscale", "hires", "hi-res", "second sampling", "second pass",
                           "refine", "高清修复", "二次采样", "潜空间放大")
        self.img2img = bool(self.image_files) and not self.invert and not self.pixel_upscale
        self.image = self.wanx or self.img2img or self.hires or f.has(
            "image", "picture", "photo", "poster", "draw", "render", "paint", "portrait", "illustration", "wallpaper",
            "stable diffusion", "sdxl", "图", "画", "海报", "照片", "插画", "壁纸", "生成") or bool(f.width) \
            or bool(self.image_files) or any(v is not None for v in (f.sampler, f.scheduler, f.steps, f.cfg,
                                                                     f.checkpoint, f.lora)) or bool(f.seeds)
        # a plain description with no other task is a picture to draw
        if not self.image and not self.llm and not self.text_files and len(f.text.split()) >= 3 \
                and "?" not in f.text and "?" not in f.text:
            self.image = True
        self.regex = f.has("regex", "正则", "regular expression")
        self.template = f.has("模板", "template") and any("{" in q for q in f.quoted)
        self.summarize = f.has("summarize", "summarise", "summary", "总结", "摘要", "概括")
        self.translate = f.has("translate", "翻译")
        self.save = f.has("save", "保存", "存下", "存成", "写入文件", "store")
        self.parallel = f.has("in parallel", "parallel", "并行", "同时", "at the same time") or \
            (self.image and f.has("caption", "文案", "slogan", "tagline") and f.has("both", "两者", "都"))
        self.caption = f.has("caption", "slogan", "tagline", "标语", "配文")
        self.text_only = self.llm and not self.image and not self.wanx


# ---- text helpers -------------------------------------------------------------------------------------
_PARAMS = [
    SEED_LIST, r"\b\d+\s+(?:different\s+|distinct\s+)?(?:images|pictures|photos|variations|versions)\b",
    FILE_NAME, r"(?:with|using)\s++(?:the\s++)?\S*\s*lora\b",
    r"\blora\b", r"(?:with|using|by)\s+(?:dashscope\s+)?(?:wanx|万相)", r"用\s*(?:通义)?万相", r"用\s*sdxl",
    r"\bsdxl\b", r"横版|竖版", r"\b\d{2,4}\s*[x×*]\s*\d{2,4}\b", r"\d{2,4}\s*[x×*]\s*\d{2,4}", r"\b\d+\s*steps?\b", r"步数\s*+[::]?\s*+\d+",
    r"(?<!\d)\d+\s*步", r"\bseeds?\s*+[:=]?\s*+\d+(\s*(and|,)\s*\d+)?", r"(随机)?种子\s*+[::]?\s*+\d+(\s*(和|与|、)\s*\d+)?",
    r"\bcfg(\s*+scale)?\s*+[:=]?\s*+\d+(\.\d+)?", r"using the \w+ sampler", r"with the \w+ scheduler",
    r"\b(euler_ancestral|euler|dpmpp_2m|karras|exponential)\b", r"(use|using|with) the checkpoint \S+",
    r"with the lora \S+( at strength \d+(\.\d+)?)?", r"(?<!\S)\S+\.safetensors", r"at strength \d+(\.\d+)?",
    r"(avoid|without|negative prompt:?)\s+[^.。;]+", r"(不要|避免)[^。;,,]+", r"(?<!\d)\d+\s*张", r"生成\s*[一二两三四五六七八九十\d]+\s*张",
    r"重绘幅度\s*\d+(\.\d+)?", r"\bdenoise\s*\d+(\.\d+)?",
]
_LEAD = [r"^(please\s+)?(make|generate|create|draw|render|paint|produce)\s+(me\s+)?(a|an)?\s*(\d+\s*x\s*\d+\s*)?"
         r"((image|picture|photo|illustration|poster)\s+of\s+)?", r"^(画|生成|绘制|创作)(一只|一张|一幅|一个)?"]


_EDGE_PUNCTUATION = " ,,.。;;"  # trimmed from both ends of a prompt


def subject_text(f: Facts) -> str:
    """The request with its parameters and leading verbs removed: the picture it describes."""
    text = f.text
    for pattern in _PARAMS:
        text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    # spaces are collapsed before commas are tidied, not after: \s*[,,] would try a long run of spaces from
    # each of its characters (quadratic), and removed parameters leave such runs behind
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s*[,,]\s*(?=[,,.。]|$)", "", text).strip(_EDGE_PUNCTUATION)
    for pattern in _LEAD:
        text = re.sub(pattern, "", text, flags=re.IGNORECASE).strip()
    text = re.sub(r"^(of|a|an)\s+", "", text, flags=re.IGNORECASE).strip(_EDGE_PUNCTUATION)
    return _trim_dangling(text) or f.text


_DANGLING = {"with", "and", "of", "at", "in", "using", "by", "for", "to"}


def _trim_dangling(text: str) -> str:
    """Drop words left dangling at the end by removed parameters ("a fox with and"), one word at a time from
    the end by index, so a long tail of them costs linear time rather than one scan of the text per word."""
    end = len(text)
    while True:
        start = end
        while start > 0 and not text[start - 1].isspace():
            start -= 1
        if start == 0 or text[start:end].lower() not in _DANGLING:
            return text[:end]
        end = start
        while end > 0 and (text[end - 1].isspace() or text[end - 1] in _EDGE_PUNCTUATION):
            end -= 1



def _provider_for(model: str) -> str:
    return "dashscope" if model.startswith("qwen") else "openai-compatible"


def _llm_model(f: Facts) -> str:
    return f.llm_model or ("qwen-max" if f.lang == "zh" else "gpt-4o-mini")


# ---- the planner ----------------------------------------------------------------------------------------
def plan_offline(request: str, *, checkpoints: list[str], loras: list[str], inputs: list[str],
                 answers: dict[str, str] | None = None, registry: Any = None) -> OfflineResult:
    answers = answers or {}
    f = extract(request, checkpoints=checkpoints, loras=loras, inputs=inputs)
    intents = Intents(f, inputs)
    b = WorkflowBuilder()
    if intents.wanx and not intents.beyond:
        return _wanx_flow(b, f, intents)
    return plan_stages(request, checkpoints=checkpoints, loras=loras, inputs=inputs, answers=answers,
                       registry=registry)


def plan_stages(request: str, *, checkpoints: list[str], loras: list[str], inputs: list[str],
                answers: dict[str, str], registry: Any) -> OfflineResult:
    """Image and video requests: read the stages the words ask for, build each from a fragment for the target
    catalog, chained by socket type; whatever cannot be built is listed as not covered, never dropped."""
    from agent.offline.chain import build
    from agent.offline.stages import read_request
    from runtime import folders

    if registry is None:
        from nodes.registry import default_registry

        registry = default_registry()
    parsed = read_request(request, checkpoints=checkpoints, loras=loras, inputs=inputs, answers=answers,
                          upscale_models=folders.model_files("upscale_models"))
    built = build(parsed, registry=registry, answers=answers)
    covered = [c.as_dict() for c in built.covered]
    not_covered = [c.as_dict() for c in built.not_covered]
    notes = list(dict.fromkeys([*parsed.notes, *built.notes]))
    question = None
    if built.question is not None:
        question = Question(built.question.text, list(built.question.choices), built.question.slot)
    error = None
    if built.workflow is None and question is None:
        missing = "; ".join(f"{c['what']}: {c['reason']}" for c in not_covered) or "nothing to build"
        error = f"I could not build any part of this request ({missing})."
    return OfflineResult(built.workflow, built.summary, question=question, error=error,
                         template="+".join(built.stages_used), covered=covered, not_covered=not_covered,
                         notes=notes)




def _prompt_writer(b: WorkflowBuilder, f: Facts, subject: str) -> str:
    model = _llm_model(f)
    system = ("You write prompts for text-to-image models. Turn the user's idea into one detailed English image "
              "prompt (subject, setting, light, style). Answer with the prompt only.")
    return b.add("LLMChat", provider=_provider_for(model), model=model, system_prompt=system, prompt=f.text,
                 temperature=0.7, max_tokens=400, seed=0, json_output=False)


def _wanx_flow(b: WorkflowBuilder, f: Facts, intents: Intents) -> OfflineResult:
    size = f.size_text if f.size_text else DASHSCOPE_SIZES_FALLBACK
    from nodes.api.nodes import DASHSCOPE_SIZES

    if size not in DASHSCOPE_SIZES:
        size = DASHSCOPE_SIZES_FALLBACK
    prompt: Any = subject_text(f)
    if intents.llm:
        prompt = b.out(_prompt_writer(b, f, subject_text(f)))
    wanx = b.add("DashScopeImageSynthesis", model="wanx2-t2i-lite", prompt=prompt,
                 negative_prompt=f.negative or "", size=size, seed=f.seeds[0] if f.seeds else 0, n=f.batch or 1)
    b.add("SaveImage", images=b.out(wanx), filename_prefix="NodeWeaver/wanx")
    if intents.parallel or intents.caption:
        _caption_branch(b, f)
    return OfflineResult(b.prompt, "Wanx text-to-image" + (" from an LLM-written prompt" if intents.llm else ""),
                         template="wanx")


def _caption_branch(b: WorkflowBuilder, f: Facts) -> None:
    model = _llm_model(f)
    chat = b.add("LLMChat", provider=_provider_for(model), model=model,
                 system_prompt="You write short marketing copy. Answer with one line.",
                 prompt=f"Write a one-line marketing caption for: {subject_text(f)}", temperature=0.8,
                 max_tokens=100, seed=0, json_output=False)
    b.add("SaveText", text=b.out(chat), filename_prefix="NodeWeaver/caption", format="txt")
