"""Slots of one clause of a request (Chinese and English): the values it states (count, size, scale, denoise,
video length, files, control kind, outpaint sides, model family, negatives, style), each removed from the text
as it is read, and the prompt that is left once instruction words are cleaned off.

Every pattern is precompiled and runs in time linear in the clause: no two unbounded quantifiers compete for
the same characters, and whitespace is collapsed before any pattern sees the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent.offline.extract import SAMPLERS, SCHEDULERS, cn_number, decimal, number

IC = re.IGNORECASE
IMAGE_EXT = ("png", "jpg", "jpeg", "webp", "bmp")
VIDEO_EXT = ("mp4", "mov", "webm", "gif", "avi", "mkv")
MODEL_EXT = ("safetensors", "ckpt", "pth", "pt", "bin", "gguf", "onnx")
TEXT_EXT = ("txt", "md", "json", "csv")
AUDIO_EXT = ("wav", "mp3", "flac", "ogg")
FILE = re.compile(r"(?<![A-Za-z0-9_\-./])[A-Za-z0-9_\-./]+\.(" + "|".join(IMAGE_EXT + VIDEO_EXT + MODEL_EXT + TEXT_EXT + AUDIO_EXT)
                  + r")(?![A-Za-z0-9_])", IC)
EN_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
              "ten": 10, "a pair of": 2, "a couple of": 2}
CJK = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Slots:
    """What one clause states; `text` is the clause with every stated value taken out."""

    text: str
    count: int | None = None
    width: int | None = None
    height: int | None = None
    scale: float | None = None
    denoise: float | None = None
    frames: int | None = None
    fps: float | None = None
    seconds: float | None = None
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    audios: list[str] = field(default_factory=list)
    model_hint: str | None = None
    negatives: list[str] = field(default_factory=list)
    style: str | None = None
    settings: bool = False  # the clause stated a global setting (seed, steps, cfg, sampler, LoRA …)


def _set(slots: Slots, name: str, value: object) -> None:
    if getattr(slots, name) is None and value is not None:
        setattr(slots, name, value)


# ---- files -------------------------------------------------------------------------------------------------
def _files(slots: Slots) -> None:
    def take(m: re.Match) -> str:
        ext = m.group(2).lower()
        name = m.group("name")
        bucket = (slots.images if ext in IMAGE_EXT else slots.videos if ext in VIDEO_EXT else
                  slots.models if ext in MODEL_EXT else slots.texts if ext in TEXT_EXT else slots.audios)
        bucket.append(name)
        return " "

    slots.text = _FILE_TAKEN.sub(take, slots.text)


# a file's determiner goes with it: "turn my photo.png to anime style" leaves "turn to anime style", not "my to"
_FILE_TAKEN = re.compile(r"(?:\b(?:my|our|your|this|that|the) )?(?P<name>" + FILE.pattern + ")", IC)


# ---- numbers -----------------------------------------------------------------------------------------------
_N = r"(\d+(?:\.\d+)?)"
_SIZE = re.compile(r"(?<!\d)(\d{2,4}) ?[x×*] ?(\d{2,4})(?!\d)(?: ?(?:px|pixels|像素))?")
_SIZE_WORDS = re.compile(r"(?:宽度?|\bwidth) ?(?:[::=]|为|是|of)? ?(\d{2,4}) ?(?:px|像素)?[,,、 ]? ?(?:and )?(?:高度?|\bheight) ?"
                         r"(?:[::=]|为|是|of)? ?(\d{2,4})(?: ?(?:px|pixels|像素))?", IC)
_ORIENTATION = re.compile(r"横版|横图|竖版|竖图|landscape orientation|portrait orientation|\bvertical\b|\bhorizontal\b"
                          r"|\bwidescreen\b", IC)
_COUNT_ZH = re.compile(r"(?<![\d第])(\d+|[一二两三四五六七八九十]) ?[张幅](?:不同的)?(?:图片|图像|照片|插画|图|画)?")
_COUNT_EN = re.compile(r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten|a pair of|a couple of) "
                       r"(?:different |distinct |separate )?(?:images|pictures|photos|variations|versions|"
                       r"illustrations|renders|drawings|paintings|wallpapers|image|picture|photo)\b"
                       r"|\bbatch(?: size)? (?:of )?(\d+)", IC)
_SCALE = re.compile(r"(?:\b(?:by|to) |放大到? ?|放大为 ?)?(?<![A-Za-z0-9_.])" + _N + r" ?(?:x|×|倍|times)(?![\w\-])"
                    r"|(?<![\w])[x×]" + _N + r"\b|([两二三四]) ?倍|\b(double|twice|triple|quadruple)\b"
                    r"|\bby (\d(?:\.\d+)?)(?![\w.%])(?! ?(?:px|pixels?|像素))", IC)
_DENOISE_END = r"(?![\d.])(?! ?[张幅个次遍倍xX×])(?: ?%)? ?[))]?"
_DENOISE = re.compile(r"[((]? ?(?:(?:light|low|slight|gentle|subtle|high|strong|heavy)[- ])?(?:(?:denoise|denoising)(?: strength)?|重绘幅度|重绘强度|重绘|降噪(?:强度|幅度)?|去噪(?:强度|幅度)?)"
                      r"[,, ]{0,2}(?:(?:of|at|=|:|:|to|around|about|roughly|approximately|like|设为|为|是|~|≈) ?){0,2}"
                      r"[((]? ?" + _N + _DENOISE_END, IC)
# "strength 0.4", "(low strength, like 0.35)": the img2img strength, unless the clause is about a LoRA or ControlNet
_STRENGTH = re.compile(r"[((]? ?(?:(?:low|high|medium|light|strong)[- ])?(?:strength|强度)[,, ]{0,2}"
                       r"(?:(?:of|at|=|:|:|to|around|about|roughly|like|设为|为|是|~|≈) ?){0,2}" + _N + _DENOISE_END, IC)
_OTHER_STRENGTH = re.compile(r"lora|control ?net|canny|depth|pose|ip-?adapter|redux|reference|参考|(?:控制|权重)", IC)
_FPS = re.compile(r"(?:(?:at )?(?<![\d.])" + _N + r" ?(?:fps|帧每秒|帧/秒)|(?:每秒|帧率|frame rate(?: of)?) ?[::]? ?"
                  + _N + r" ?帧?)", IC)
_FRAMES = re.compile(r"(?<![\d.])(\d+) ?(?:frames?|帧)(?!率)", IC)
_SECONDS = re.compile(r"(?<![\d.])" + _N + r"(?: ?(?:seconds?|secs?|秒钟?)|s\b|-second\b)", IC)
_WORD_NUMBER = {"double": 2.0, "twice": 2.0, "triple": 3.0, "quadruple": 4.0}


def _numbers(slots: Slots, *, scale: bool, video: bool) -> None:
    """Sizes, counts and denoise always; the scale only in an upscale clause ("2x" means nothing elsewhere) and
    frames/fps/seconds only in a video clause."""
    def size(m: re.Match) -> str:
        if slots.width is None:
            slots.width, slots.height = number(m.group(1)), number(m.group(2))
        return " "

    def orientation(m: re.Match) -> str:
        word = m.group(0).lower()
        if slots.width is None:
            slots.width, slots.height = (768, 1024) if word in ("竖版", "竖图", "portrait orientation", "vertical") \
                else (1024, 768)
        return " "

    def count_zh(m: re.Match) -> str:
        _set(slots, "count", cn_number(m.group(1)))
        return " "

    def count_en(m: re.Match) -> str:
        word = (m.group(1) or m.group(2) or "").lower()
        _set(slots, "count", EN_NUMBERS.get(word) or (number(word) if word.isdigit() else None))
        return " "

    slots.text = _SIZE.sub(size, slots.text)
    slots.text = _SIZE_WORDS.sub(size, slots.text)
    slots.text = _ORIENTATION.sub(orientation, slots.text)
    slots.text = _COUNT_ZH.sub(count_zh, slots.text)
    slots.text = _COUNT_EN.sub(count_en, slots.text)
    slots.text = _DENOISE.sub(lambda m: _put(slots, "denoise", _strength(m.group(1))), slots.text)
    if slots.denoise is None and not _OTHER_STRENGTH.search(slots.text):
        slots.text = _STRENGTH.sub(lambda m: _put(slots, "denoise", _strength(m.group(1))), slots.text)
    if video:
        slots.text = _FPS.sub(lambda m: _put(slots, "fps", decimal(m.group(1) or m.group(2))), slots.text)
        slots.text = _FRAMES.sub(lambda m: _put(slots, "frames", number(m.group(1))), slots.text)
        slots.text = _SECONDS.sub(lambda m: _put(slots, "seconds", decimal(m.group(1))), slots.text)
    if scale:
        slots.text = _SCALE.sub(lambda m: _put(slots, "scale", _scale_value(m)), slots.text)


def _strength(value: str) -> float | None:
    """A denoise of 0–1 ("0.45"), or a percentage ("重绘 50" → 0.5); None past 100."""
    number = decimal(value)
    if number is None or number > 100:
        return None
    return round(number / 100, 3) if number > 1 else number


def _scale_value(m: re.Match) -> float | None:
    if m.group(1) or m.group(2) or m.group(5):
        return decimal(m.group(1) or m.group(2) or m.group(5))
    if m.group(3):
        return float(cn_number(m.group(3)) or 2)
    return _WORD_NUMBER[m.group(4).lower()] if m.group(4) else None


def _put(slots: Slots, name: str, value: object) -> str:
    _set(slots, name, value)
    return " "


# ---- instructions that are not description -------------------------------------------------------------------
_KEEP_WHAT = r"(?:composition|layout|structure|pose|framing|perspective|colou?rs?|lighting|face|identity|proportions|" \
    r"shapes?|details?|outline|background|rest)"
_ASIDES = re.compile(
    r"(?:\b(?:and|but|while|please) )?\b(?:keep(?:ing)?|preserv(?:e|ing)|maintain(?:ing)?|retain(?:ing)?) (?:the |its |my "
    r"|her |his |their )?(?:original |same |overall )?" + _KEEP_WHAT + r"(?: (?:the same|intact|unchanged|as (?:is|it is)"
    r"))?\b|\b(?:i |we )?needs? (?:it |them |this )?(?:(?:much|a lot|way) )?(?:bigger|larger|sharper|clearer|"
    r"higher[- ]res(?:olution)?)(?: for (?:print(?:ing)?|a poster|the web|my wall))?\b|\bfor print(?:ing)?\b|"
    r"保持(?:原图的?|原来的?|原有的?)?(?:构图|布局|姿势|结构|轮廓|五官|脸型?)(?:不变)?|(?:构图|布局|结构)(?:保持)?不变|"
    r"不(?:要)?(?:改变|动)(?:原图的?)?(?:构图|布局)|保留(?:原图的?|原来的?)?(?:构图|布局|结构)|(?:要|用于|拿去)打印(?:用)?", IC)


def _asides(slots: Slots) -> None:
    """"keep the composition", "need bigger for print", "保持构图不变": said to the planner, not to the model."""
    slots.text = _ASIDES.sub(" ", slots.text)


# ---- global settings (read by extract; only taken out of the prompt here) --------------------------------
_B, _E = r"(?<![A-Za-z0-9_])", r"(?![A-Za-z0-9_])"  # ASCII word edges: "用euler" has no \b (用 is a word char)
_SAMPLER_NAMES = "|".join(SAMPLERS)
_SCHEDULER_NAMES = "|".join(n for n in SCHEDULERS if n != "normal")  # "normal" is also an ordinary word
_SETTINGS = [re.compile(p, IC) for p in (
    r"(?:with |using |use )?(?:the |a )?(?:random |fixed )?(?:seeds?|随机种子|种子)(?: ?(?:固定(?:为|成|在|是)?|fixed (?:at|to)|"
    r"is|of|为|是))? ?[::=]? ?\d+(?: ?(?:,|,|、|and|or|和|与|或) ?\d+)*|固定(?:的)?(?:种子|seed) ?(?:为|是)? ?\d+",
    r"(?<!\d)\d+ ?(?:sampling )?steps?\b|(?:with |in )?steps? ?[:=] ?\d+|(?:采样)?步数 ?[::]? ?\d+|(?<!\d)\d+ ?步",
    r"(?:at |with )?(?:a )?\bcfg(?: scale)? ?(?:of )?[:=]? ?\d+(?:\.\d+)?|(?:引导系数|提示词相关性) ?[::]? ?\d+(?:\.\d+)?",
    rf"(?:with |using |use |(?:采样器|采样方法)? ?(?:用|使用|采用|[::=为是])? ?)?(?:the )?{_B}(?:{_SAMPLER_NAMES}){_E}"
    rf"(?: sampler| ?采样器)?(?:(?: (?:and|with) (?:the )?| |\+| ?\+ ?|[,,、] ?(?:调度器|scheduler) ?(?:用|使用|[::=为是])? ?)?"
    rf"{_B}(?:{_SCHEDULER_NAMES}){_E}(?: scheduler| ?调度器)?)?(?: ?采样)?",
    rf"(?:with |using |use |(?:and |with )?the |(?:调度器|scheduler) ?(?:用|使用|[::=为是])? ?)?{_B}(?:karras|exponential|"
    rf"sgm_uniform|ddim_uniform|linear_quadratic|kl_optimal|normal(?= scheduler)){_E}(?: scheduler| ?调度器)?",
    r"(?:(?:with|using|use|add|apply) (?:the |a |my )?|(?:加上|使用|用|加) ?)?(?:(?<![A-Za-z0-9_\-.])[\w\-.]{1,60} ?)?lora(?![A-Za-z0-9_])"
    r"(?: ?(?:at )?(?:strength|weight|权重|强度) ?[::=]? ?\d+(?:\.\d+)?)?(?: ?(?:at )?(?<![\w.])[01]\.\d+)?",
    r"(?:at |with )?(?:a )?(?:lora )?(?:strength|weight|权重|强度) ?(?:of )?[::=]? ?\d+(?:\.\d+)?",
    r"(?:(?:with|using|use|via|on) (?:the )?|(?:用|使用|通过) ?)?(?:dashscope )?(?:wanx|通义万相|万相)",
    r"(?:(?:with|using|use) (?:the )?(?:checkpoint|model) )",
)]


def _settings(slots: Slots) -> None:
    for pattern in _SETTINGS:
        slots.text, n = pattern.subn(" ", slots.text)
        slots.settings = slots.settings or n > 0


# ---- model families ----------------------------------------------------------------------------------------
FAMILIES = [
    (r"sd ?xl|stable diffusion xl|sd_xl", "sdxl"), (r"sd ?1\.5|sd15|stable diffusion 1\.5|v1-5", "sd15"),
    (r"sd ?3(?:\.5)?|stable diffusion 3(?:\.5)?", "sd3"), (r"flux(?:\.1)?[- ]?kontext", "flux-kontext"),
    (r"flux(?:\.1)?(?:[- ](?:dev|schnell))?", "flux"), (r"wan ?2\.[12]|wan(?:video)?", "wan"),
    (r"ltx-?video|ltxv|ltx", "ltxv"), (r"svd|stable video diffusion", "svd"),
    (r"hunyuan ?video|hunyuan|混元", "hunyuan"), (r"qwen[- ]?image[- ]?edit|qwen[- ]?edit", "qwen-edit"),
    (r"qwen[- ]?image", "qwen"), (r"hidream", "hidream"), (r"kolors|可图", "kolors"), (r"cosmos", "cosmos"),
    (r"mochi", "mochi"), (r"pixart", "pixart"), (r"auraflow", "auraflow"), (r"lumina", "lumina"),
    (r"chroma", "chroma"), (r"stable cascade", "cascade"), (r"wanx|通义万相|万相", "wanx"),
]
_FAMILY = re.compile(
    r"(?:(?:with|using|use|via|on|in) (?:the |a )?|(?:用|使用|基于|采用|通过) ?)?(?<![A-Za-z0-9_.\-])("
    + "|".join(f"(?:{p})" for p, _ in FAMILIES) + r")(?![A-Za-z0-9_\-])(?: ?(?:base |video )?(?:models?|checkpoint|模型))?", IC)
_FAMILY_KEYS = [(re.compile(f"^(?:{p})$", IC), key) for p, key in FAMILIES]


def family_of(word: str) -> str | None:
    """The canonical family key ("sdxl", "wan" …) of a family word."""
    return next((key for pattern, key in _FAMILY_KEYS if pattern.match(word)), None)


def _families(slots: Slots) -> None:
    def take(m: re.Match) -> str:
        _set(slots, "model_hint", family_of(m.group(1)))
        return " "

    slots.text = _FAMILY.sub(take, slots.text)


# ---- negatives ---------------------------------------------------------------------------------------------
_NEG_LABEL = re.compile(r"(?:negative prompts?|negatives?|反向提示词|反向词|负面提示词|负向提示词|负面词|负面) ?[::] ?"
                        r"([^。;;\n]*)", IC)
_NEG_EN = re.compile(r"\b(?:without|avoid(?:ing)?|no(?! (?:more|longer|matter|one|need)\b)) ([^,.;!?,。;]+)", IC)
_NEG_ZH = re.compile(r"(?:不要|避免|不想要|别有|不能有|不带) ?([^,,。;;!?!?]+)")
# a style stated inside a "without …" phrase ends the negative: "without the car as an oil painting"
_NEG_CUT = re.compile(r" (?:as an? |as |in (?:an? |the )?(?:[\w\-]{1,30} ){0,3}style\b|in the style of )|风格", IC)


def _negatives(slots: Slots) -> None:
    def labelled(m: re.Match) -> str:
        _add_negative(slots, m.group(1))
        return " "

    def unlabelled(m: re.Match) -> str:
        wanted = m.group(1)
        cut = _NEG_CUT.search(wanted)
        kept = ""
        if cut:
            # a Chinese style phrase starts after the last space before "风格" ("不要人物 水彩风格")
            start = cut.start() if cut.group() != "风格" else wanted.rfind(" ", 0, cut.start()) + 1
            wanted, kept = wanted[:start], wanted[start:]
        _add_negative(slots, wanted)
        return " " + kept

    slots.text = _NEG_LABEL.sub(labelled, slots.text)
    slots.text = _NEG_EN.sub(unlabelled, slots.text)
    slots.text = _NEG_ZH.sub(unlabelled, slots.text)


NEGATIVE_EDGE = " ,,.。'\"“”"


def _add_negative(slots: Slots, text: str) -> None:
    value = re.sub(r"(?<! ) and ", ", ", text).strip(NEGATIVE_EDGE)
    if value:
        slots.negatives.append(value)


# ---- style -------------------------------------------------------------------------------------------------
STYLE_WORDS = (r"watercolou?r|oil painting|oil-painting|anime|manga|cyberpunk|steampunk|pixel art|pixel|sketch|pencil"
               r" drawing|ink|ukiyo-e|impressionist|impressionism|van gogh|ghibli|studio ghibli|cartoon|comic|3d render"
               r"|claymation|clay|low poly|vaporwave|art nouveau|art deco|pop art|noir|photorealistic|realistic|"
               r"cinematic|fantasy|minimalist|vintage|retro|charcoal|pastel|line art|flat illustration|chinese ink")
_STYLE_EN = re.compile(
    r"\bin (?:an? |the )?((?!the |style\b)(?:[\w\-]{1,30} ){0,3}?[\w\-]{1,30}) style\b(?! of)"
    r"|\bin the style of ((?:(?!this |that |the |my |these )[\w\-]{1,30})(?: [\w\-]{1,30}){0,3})"
    r"|\bas (?:an? )?((?:[\w\-]{1,30} ){0,2}?(?:painting|watercolou?r|sketch|drawing|illustration|cartoon|anime|"
    r"comic|pixel art|render|print|poster|engraving|mosaic))\b"
    r"|\b((?:[\w\-]{1,30} )?\w{1,30})[- ]style\b", IC)
_STYLE_ZH_WORDS = ("水彩", "油画", "素描", "水墨", "国画", "动漫", "二次元", "赛博朋克", "蒸汽朋克", "像素", "漫画", "卡通",
                   "写实", "浮世绘", "吉卜力", "宫崎骏", "印象派", "梵高", "黏土", "版画", "铅笔画", "彩铅", "工笔", "剪纸",
                   "油彩", "插画", "3D", "皮克斯", "迪士尼", "极简", "复古")
_STYLE_ZH_RUN = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]{1,12}$")
_STYLE_ZH_BARE = re.compile(r"(?:改成|变成|转成|换成|转换成|做成|画成|改为|转为|变为|成)(" + "|".join(_STYLE_ZH_WORDS)
                            + r")(画|图)?")
_STYLE_ZH_FENG = re.compile(r"((?:迪士尼|皮克斯)?(?:" + "|".join(_STYLE_ZH_WORDS) + r"|动画|日漫|美漫|国风|港风|古风|油画))风"
                            r"(?=$|[的,,。;;!!??、 ]|格)")
_ZH_STYLE_LEAD = re.compile(r"^.*?(?:改成|变成|转成|换成|转换成|做成|画成|改为|转为|变为|一种|一个|是|用|以|的|成|转)")


_STYLE_LEAD_EN = re.compile(r"^(?:(?:into|in|as|to|an?|the|and|with)\b ?)+", IC)


def _style(slots: Slots) -> None:
    """The style named, kept in the text too: it belongs in the prompt as well as in `style`."""
    text = slots.text
    if m := _STYLE_EN.search(text):
        slots.style = _STYLE_LEAD_EN.sub("", next(g for g in m.groups() if g).strip())
        if m.group(1) or m.group(4):
            slots.style += " style"
        return
    for word in ("风格", "画风"):
        at = text.find(word)
        if at > 0 and (m := _STYLE_ZH_RUN.search(text, max(0, at - 12), at)):
            # the words just before it, from the verb or particle that introduces them: "改成水彩画风格"
            phrase = _ZH_STYLE_LEAD.sub("", m.group()) or m.group()
            slots.style = phrase + word
            return
    if m := _STYLE_ZH_FENG.search(text):
        slots.style = m.group(1) + "风"  # "动漫风", "吉卜力风": a style, not a video
        return
    if m := _STYLE_ZH_BARE.search(text):
        slots.style = m.group(1) + ("画" if m.group(2) == "画" else "")


# ---- prompt cleaning ---------------------------------------------------------------------------------------
_FILLER_EN = r"please|pls|kindly|can you|could you|would you|will you|i want(?: you)? to|i want|i'd like(?: you)? to|" \
    r"i'd like|i would like(?: you)? to|i would like|i need|help me|let's|let me|also|now|first|and|then|just"
_LEAD_EN = re.compile(
    r"^(?:(?:" + _FILLER_EN + r"|use it to|using it|with it|with that prompt|from it)\b[ ,]?)*"
    r"(?:(?:make|generate|create|draw|render|paint|produce|design|illustrate|imagine|sketch|give|show|get)\b ?"
    r"(?:me |us |for me )?)?"
    r"(?:(?:(?:an|a|one|some|the|another|new)\b ?)?"
    r"(?:image|picture|photo|photograph|illustration|painting|drawing|render|artwork|wallpaper|pic)s?\b ?"
    r"(?:of|showing|depicting|that shows|with|featuring)?\b ?)?", IC)
_FILLER_TAIL_EN = re.compile(r"(?:\b(?:for me|please|thanks|thank you)\b[ ,.!]*)+$", IC)
_LEAD_ZH = re.compile(
    r"^(?:请你?|麻烦你?|帮我|帮忙|给我|替我|我想要|我想|我要|我需要|能不能|可以|你|先|并且?|然后|再|接着|之后|最后|随后|"
    r"用它|用这段提示词|用这个提示词|用这段文字|根据它|按它|把|将)*"
    r"(?:画|生成|绘制|创作|制作|做|来|出|设计|创建|画出)*"
    r"(?:一张|一幅|一个|一副|一组)?(?:图片|图像|照片|插画|图)?(?:[::,,] ?)?(?:是|为)?")
_TAIL_ZH = re.compile(r"(?:的(?:图片|图像|照片|插画|图|画|壁纸))$|(?:图片|图像)$|(?:谢谢你?|好吗|吧)$")
_DANGLING = re.compile(r"(?:^|(?<=[ ,]))(?:with|and|of|at|in|from|using|use the|use|by|for|to|on|the|a|an|用|把|将|让)$",
                       IC)
_LEADING_JUNK = re.compile(r"^(?:(?:of|and|with|the|use the|use|using|to)\b ?|(?:用|让)(?= )|的|[,,.。:: ])+", IC)
_SPACES = re.compile(r"\s+")
_COMMA_RUNS = re.compile(r"(?:[,,] ?)+(?=[,,.。;;!?]|$)|(?<=[,,]) (?=[,,])")
CJK_GAP = re.compile(r"(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])")  # a gap a removed value left in Chinese text
_SPACE_PUNCT = re.compile(r" (?=[,,.。;;!?])")
EDGE = " ,,.。;;:：!!??、"


def clean_prompt(text: str) -> str:
    """The description left when instruction words, filler and punctuation debris are taken off its ends."""
    text = _SPACES.sub(" ", text).strip(EDGE)
    text = CJK_GAP.sub("", text)
    text = _COMMA_RUNS.sub("", text)
    text = _SPACE_PUNCT.sub("", text)
    for _ in range(2):  # a lead can uncover another one ("please, make an image of")
        text = _LEAD_EN.sub("", text).strip(EDGE)
        text = _LEAD_ZH.sub("", text).strip(EDGE)
        text = _LEADING_JUNK.sub("", text).strip(EDGE)
    text = _FILLER_TAIL_EN.sub("", text).strip(EDGE)
    text = _TAIL_ZH.sub("", text).strip(EDGE)
    return trim_dangling(text)


def trim_dangling(text: str) -> str:
    """Words left dangling at the end by removed values ("a fox with and"), one at a time (each search starts
    near the end, so a long tail of them stays linear)."""
    while text:
        start = max(0, len(text) - 12)
        m = _DANGLING.search(text, start)
        if not m:
            return text
        text = text[:m.start()].rstrip(EDGE)
    return text


def read_slots(clause: str, *, scale: bool = False, video: bool = False) -> Slots:
    """Every value one clause states, and the clause with them taken out (`text`, not yet cleaned)."""
    slots = Slots(text=_SPACES.sub(" ", clause))
    _files(slots)
    _asides(slots)
    _negatives(slots)
    _numbers(slots, scale=scale, video=video)
    _settings(slots)
    _families(slots)
    _style(slots)
    return slots


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def template_values(text: str, template: str) -> str:
    """`name=value` lines for a template's placeholders, each value as the request states it ("name is Bo",
    "age=3", "名字是小明"); a placeholder the request gives no value keeps its own name."""
    names = list(dict.fromkeys(re.findall(r"\{(\w+)\}", template)))
    found = _assignments(text, {name.lower() for name in names})
    return "\n".join(f"{name}={found.get(name.lower(), name)}" for name in names)


_ASSIGNMENT = re.compile(r"\s*(?:是|为|=|:|:|is)\s*([^\s,,。;;]+)", re.IGNORECASE)
_SEPARATOR_IN_WORD = re.compile(r"is|是|为", re.IGNORECASE)


def _assignments(text: str, wanted: set[str]) -> dict[str, str]:
    """The first value stated for each wanted (lower-cased) name: the name opening a word, then a separator
    (=, :, is, 是, 为) and the value. One pass over the words; a search per name would be quadratic when a
    template has thousands of placeholders. The separator may be inside the word ("名字是小明")."""
    found: dict[str, str] = {}
    lengths = {len(name) for name in wanted}
    reach = max(lengths, default=0) + 2
    for word in re.finditer(r"\w+", text):
        if len(found) == len(wanted):
            break
        value = word.group()
        cuts = [m.start() for m in _SEPARATOR_IN_WORD.finditer(value, 1, reach)] + [len(value)]
        for cut in cuts:
            if cut not in lengths or (key := value[:cut].lower()) not in wanted or key in found:
                continue
            if m := _ASSIGNMENT.match(text, word.start() + cut):
                found[key] = m.group(1)
    return found
