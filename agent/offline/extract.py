"""What a request states, read with patterns (Chinese and English): sizes, counts, steps, cfg, seeds,
sampler and scheduler, denoise, model / LoRA / file names, quoted texts, negatives, and the intents."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodes.diffusion.sampling import COMFY_SAMPLERS, COMFY_SCHEDULERS

CN_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
NUM = r"(\d+(?:\.\d+)?)"
# "seed 7", "seeds 10, 20 and 30", "种子 1 和 2", "随机种子1、2". Whitespace around an optional separator is
# possessive (\s*+): two plain \s* there would split a long run of spaces every possible way (quadratic).
SEED_LIST = r"(?:seeds?|种子)\s*+[::=]?\s*+(\d+(?:\s*+(?:,|,|、|and|or|和|与|或)\s*+\d+)*)"
LANGUAGES = {"chinese": "Chinese", "中文": "Chinese", "汉语": "Chinese", "english": "English", "英文": "English",
             "英语": "English", "french": "French", "法语": "French", "法文": "French", "japanese": "Japanese",
             "日语": "Japanese", "日文": "Japanese", "german": "German", "德语": "German", "spanish": "Spanish",
             "西班牙语": "Spanish", "korean": "Korean", "韩语": "Korean", "russian": "Russian", "俄语": "Russian"}
# ComfyUI's names (all of them run here); longest first, so a request naming two picks the more specific
SAMPLERS = sorted(COMFY_SAMPLERS, key=len, reverse=True)
SCHEDULERS = sorted(COMFY_SCHEDULERS, key=len, reverse=True)
LLM_MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o4-mini", "qwen-max", "qwen-plus", "qwen-turbo",
              "qwen-long", "deepseek-chat", "deepseek-reasoner", "glm-4", "moonshot-v1-8k"]


MAX_DIGITS = 20  # a 64-bit seed has 20; a longer run of digits is not a value anyone means


def number(digits: str) -> int | None:
    """The integer a run of digits states; None when the run is too long to be one (int() of a long run is
    slow, and past 4,300 digits it raises)."""
    return int(digits) if len(digits) <= MAX_DIGITS else None


def decimal(text: str) -> float | None:
    """The float a number states; None for one too long to mean anything (it would read as infinity)."""
    return float(text) if len(text) <= 2 * MAX_DIGITS + 1 else None


def cn_number(text: str) -> int | None:
    if text.isdigit():
        return number(text)
    if text in CN_DIGITS:
        return CN_DIGITS[text]
    if len(text) == 2 and text[0] == "十" and text[1] in CN_DIGITS:
        return 10 + CN_DIGITS[text[1]]
    return None


@dataclass
class Facts:
    text: str
    lower: str
    lang: str
    width: int | None = None
    height: int | None = None
    size_text: str | None = None
    batch: int | None = None
    steps: int | None = None
    cfg: float | None = None
    seeds: list[int] = field(default_factory=list)
    sampler: str | None = None
    scheduler: str | None = None
    denoise: float | None = None
    checkpoint: str | None = None
    lora: str | None = None
    lora_strength: float | None = None
    files: list[str] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)
    negative: str | None = None
    llm_model: str | None = None
    target_language: str | None = None
    scale: float | None = None
    image_count_words: int | None = None

    def has(self, *words: str) -> bool:
        return any(w.lower() in self.lower for w in words)


def _first(pattern: str, text: str, flags: int = re.IGNORECASE) -> re.Match | None:
    return re.search(pattern, text, flags)


# Patterns that open with an unbounded run (digits, file-name characters) carry a lookbehind, so a match is
# tried only where a run starts: without it a long run that does not match ("1111...", "a.a.a...") is rescanned
# from each of its characters, which is quadratic. Results are unchanged: a match that starts inside a run also
# matches from the run's start, which comes first.
LEAD_NUM = r"(?<!\d)" + NUM
FILE_NAME = r"(?<![\w\-./])[\w\-./]+\.(?:png|jpe?g|webp|bmp|txt|md|json|csv)"
QUOTED = r"[“\"「『']([^”\"」』']+)[”\"」』']"
QUOTE_CLOSERS = "”\"」』'"


def extract(text: str, *, checkpoints: list[str], loras: list[str], inputs: list[str]) -> Facts:
    """Every fact the request states; each pattern runs in time linear in the request's length."""
    lang = "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"
    facts = Facts(text=text, lower=text.lower(), lang=lang)
    _sizes_and_counts(facts)
    _sampling(facts)
    _names(facts, checkpoints=checkpoints, loras=loras, inputs=inputs)
    _texts(facts)
    _language_and_models(facts)
    return facts


def _sizes_and_counts(facts: Facts) -> None:
    text = facts.text
    if m := _first(r"(\d{2,4})\s*[x×*]\s*(\d{2,4})", text):
        facts.width, facts.height = number(m.group(1)), number(m.group(2))
        facts.size_text = f"{m.group(1)}*{m.group(2)}"
    elif facts.has("横版", "landscape orientation", "horizontal"):
        facts.width, facts.height = 1024, 768
    elif facts.has("竖版", "portrait orientation", "vertical"):
        facts.width, facts.height = 768, 1024
    if m := _first(r"((?<!\d)\d+|[一二两三四五六七八九十])\s*张", text):
        facts.batch = cn_number(m.group(1))
    elif (m := _first(r"\b(\d+)\s+(?:different\s+|distinct\s+)?(?:images|pictures|photos|variations|versions)\b",
                      text)) or (m := _first(r"batch(?:\s+size)?\s+(?:of\s+)?(\d+)", text)):
        facts.batch = number(m.group(1))
    if m := _first(r"(?:by|到|放大)\s*" + NUM + r"\s*(?:x|×|倍)", text) or _first(LEAD_NUM + r"\s*(?:x|×)\b", text):
        facts.scale = decimal(m.group(1))


def _sampling(facts: Facts) -> None:
    text = facts.text
    if m := _first(r"(?<!\d)(\d+)\s*steps?\b", text) or _first(r"步数\s*+[::]?\s*+(\d+)", text) or \
            _first(r"(?<!\d)(\d+)\s*步", text) or _first(r"steps?\s*+[:=]?\s*+(\d+)", text):
        facts.steps = number(m.group(1))
    if m := _first(r"cfg(?:\s*+scale)?\s*+[:=]?\s*+" + NUM, text) or \
            _first(r"(?:引导系数|提示词相关性)\s*+[::]?\s*+" + NUM, text):
        facts.cfg = decimal(m.group(1))
    for m in re.finditer(SEED_LIST, text, re.IGNORECASE):
        facts.seeds += [n for digits in re.findall(r"\d+", m.group(1)) if (n := number(digits)) is not None]
    for name in SAMPLERS:
        if re.search(rf"(?<![a-z_]){re.escape(name)}(?![a-z_])", facts.lower):
            facts.sampler = name
            break
    for name in SCHEDULERS:
        if re.search(rf"(?<![a-z_]){name}(?![a-z_])", facts.lower) and not (name == "normal" and "normal" not in
                                                                           facts.lower.split()):
            facts.scheduler = name
            break
    if m := _first(r"(?:denoise|denoising(?:\s+strength)?|重绘幅度|重绘强度)\s*+(?:of|at|=|:|:)?\s*+" + NUM, text):
        facts.denoise = decimal(m.group(1))


def _names(facts: Facts, *, checkpoints: list[str], loras: list[str], inputs: list[str]) -> None:
    text = facts.text
    facts.checkpoint = _mentioned(text, checkpoints)
    facts.lora = _mentioned(text, loras)
    if facts.lora and (m := _first(r"(?:strength|weight|权重|强度)\s*+(?:of|at|=|:|:)?\s*+" + NUM, text)):
        facts.lora_strength = decimal(m.group(1))
    mentioned = re.findall(FILE_NAME, text, re.IGNORECASE)
    facts.files = [f for f in mentioned if f in inputs] + [f for f in mentioned if f not in inputs]


def _texts(facts: Facts) -> None:
    text = facts.text
    facts.quoted = quoted_passages(text)
    if m := _first(r"(?:avoid|without|no|negative(?: prompt)?[:：]?)\s+([^.。;;]+)", text):
        # the lookbehind: one try per whitespace run, not one per character of it
        facts.negative = re.sub(r"(?<!\s)\s+and\s+", ", ", m.group(1)).strip(" .")
    elif m := _first(r"(?:不要|避免|负面提示词?[::]?)\s*([^。;;,,]+)", text):
        facts.negative = m.group(1).strip()
    if facts.negative:
        facts.negative = facts.negative.strip("'\"“”‘’「」 ")


def quoted_passages(text: str) -> list[str]:
    """The non-blank passages between quotes. The scan ends at the last closing quote: no passage ends after
    it, and an opening quote with no closer after it would otherwise rescan the rest of the text."""
    last = max(text.rfind(c) for c in QUOTE_CLOSERS)
    return [q for q in re.findall(QUOTED, text[:last + 1]) if q.strip()]


def _language_and_models(facts: Facts) -> None:
    if m := _first(r"(?:into|to|成|为)\s*(chinese|english|french|japanese|german|spanish|korean|russian|中文|汉语|"
                   r"英文|英语|法语|法文|日语|日文|德语|西班牙语|韩语|俄语)", facts.text):
        facts.target_language = LANGUAGES[m.group(1).lower()]
    for name in LLM_MODELS:
        if name in facts.lower:
            facts.llm_model = name
            break
    if facts.llm_model is None and facts.has("通义千问", "千问", "qwen"):
        facts.llm_model = "qwen-max"


def _mentioned(text: str, names: list[str]) -> str | None:
    lowered = text.lower()
    for name in sorted(names, key=len, reverse=True):
        stem = name.rsplit(".", 1)[0].lower()
        if name.lower() in lowered or (len(stem) > 4 and stem in lowered):
            return name
    return None
