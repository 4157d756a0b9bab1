"""The offline planner's request reader: words (Chinese or English) → a `ParsedRequest` of ordered stages.

A request is split into clauses on sequence words ("然后", "then", ";" …), sentence ends, and commas or "and"
that start a new action. Each clause is classified into a `StageKind` and keeps the slots it states (a scale
stays with its upscale, frames with its video). A clause that only states settings or more description joins
its neighbour; one the reader cannot map becomes an "unknown" stage, so nothing asked for is dropped silently.
Two enumerated pictures become two branches. Every pattern is precompiled and linear in the request's length.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace

from agent.offline.extract import LANGUAGES, QUOTE_CLOSERS, QUOTED, cn_number, extract
from agent.offline.slots import (
    CJK_GAP,
    EDGE,
    EN_NUMBERS,
    FILE,
    Slots,
    clean_prompt,
    family_of,
    has_cjk,
    read_slots,
    template_values,
    trim_dangling,
)
from agent.offline.spec import ParsedRequest, Stage, StageKind

IC = re.IGNORECASE
MAX_STAGES = 24  # past this the rest of the request is one "unknown" stage: reported, never dropped

# ---- splitting -----------------------------------------------------------------------------------------------
_VERBS_EN = (r"upscale|upscaled|enlarge|remove|erase|replace|swap|add|make|turn|convert|animate|describe|translate|"
             r"summari[sz]e|save|extend|expand|outpaint|inpaint|fix|restore|refine|interpolate|caption|write|invert|"
             r"cut out|change|use|apply|generate|draw|create|render|paint|hires|send|post|upload|export|give|put|"
             r"delete|get rid|crop|blur|sharpen|colorize|colourise|restyle|redraw|have|let|ask|extract|pull out|parse")
_VERBS_ZH = (r"放大|超分|去掉|移除|删除|删掉|去除|把|将|换成|加上|添加|保存|翻译|总结|描述|扩展|扩图|修复|抠图|做成|转成|"
             r"变成|让|用|生成|画(?![风面质家作])|反推|补帧|插帧|反相|存|导出|高清修复|再|给|发送|发到|上传|分享|写(?![实意生着有上真])|提取|抽取")
_BOUNDARY = re.compile(
    r"(?P<hard>(?:[,,.。!?!?] ?)?\b(?:and then|and finally|then|after that|afterwards|afterward|finally|"
    r"after which)\b[,,]?|(?:[,,.。;;] ?)?(?:然后|接着|之后|随后|最后(?!一?帧)|(?<!不)再(?!见))|[;;])"
    r"|(?P<soft>[。!?!?\n]|\.(?= |$)|[,,] ?(?=(?:" + _VERBS_EN + r")\b|(?:" + _VERBS_ZH + r"))"
    r"|(?<=[^ ]) (?:and|&) (?=(?:" + _VERBS_EN + r")\b)|(?<![合吞兼])并且?(?=(?:" + _VERBS_ZH + r"))"
    r"|(?<=[\u4e00-\u9fff])(?:再?加上?|和|以及|外加)(?=超分|放大|高清修复|人脸修复|修复人?脸|抠图|去背景|补帧|插帧))", IC)


@dataclass
class Clause:
    text: str
    after: str  # "start" | "hard" (a sequence word) | "soft" (a sentence end, or a comma starting an action)


def split_clauses(text: str) -> list[Clause]:
    """The clauses of a request, with what separated each from the one before; quoted text is never split."""
    last = max(text.rfind(c) for c in QUOTE_CLOSERS)
    spans = [(m.start(), m.end()) for m in re.finditer(QUOTED, text[:last + 1])] if last >= 0 else []
    starts = [s for s, _ in spans]
    clauses: list[Clause] = []
    begin, after = 0, "start"
    for m in _BOUNDARY.finditer(text):
        i = bisect.bisect_right(starts, m.start()) - 1
        if i >= 0 and spans[i][0] <= m.start() < spans[i][1]:
            continue
        added = _add_clause(clauses, text[begin:m.start()], after)
        begin = m.end()
        if m.group("hard"):
            after = "hard"
        elif added:
            after = "soft"  # with nothing between ("then, draw …") a sequence word still marks the next step
        if len(clauses) > MAX_STAGES:
            break
    _add_clause(clauses, text[begin:], after)
    return clauses


def _add_clause(clauses: list[Clause], piece: str, after: str) -> bool:
    piece = piece.strip(EDGE + "\n")
    if piece:
        clauses.append(Clause(piece, after))
    return bool(piece)


# ---- classification ------------------------------------------------------------------------------------------
def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern, IC)


_FILLER = _rx(r"^(?:please|pls|thanks|thank you(?: very much)?|thx|for me|ok|okay|that's all|谢谢你?|多谢|请|帮我|"
              r"麻烦了?|好的|就这样|(?:and )?(?:show|display|print|preview) (?:it|me it|the result|that)|显示出来|显示结果|"
              r"展示结果|显示|展示一下|[ ,,.。!!])*$")
# chatter and context ("hey guys, newbie here", "I've got a render out of Blender", "我是新手,求助"): said to the
# planner, never a step; a file it names is the input of the step that follows
_CHATTER = _rx(r"\b(?:hi|hey|hello|yo|greetings|howdy)\b(?: (?:guys|all|everyone|there|folks|team|friends))?|"
               r"\b(?:(?:total |complete )?(?:newbie|noob|beginner)s?|new to (?:this|comfy\w*|ai|stable diffusion|sd))\b"
               r"(?: here)?|\bi'?m (?:new|a (?:total |complete )?(?:beginner|newbie|noob)|not sure|stuck|lost)\b[^,.;]*|"
               r"\bi am (?:new|a (?:beginner|newbie))\b[^,.;]*|\b(?:i'?ve got|i got|i have|i made|i rendered|i took|"
               r"here(?:'s| is)|this is)\b (?:an? |my |the |this )?(?:\w+ )?(?:render|photo|picture|image|pic|shot|scan|"
               r"drawing|sketch|screenshot|logo|portrait|file)s?\b[^,.;]*|\bhelp(?: me)?(?: (?:please|pls|out))?\b|"
               r"\bany(?:one|body) (?:know|help)\w*\b[^,.;]*|\bthanks? in advance\b|\bquick question\b|"
               r"我是(?:个|一个)?(?:新手|小白|萌新|初学者)|(?:新手|小白|萌新)(?:一枚|一个)?|求助|求教|请教(?:一下)?|大家好|"
               r"各位(?:大佬)?好?|你好|您好|哈喽|急|在线等|我?(?:手上|手里|这里|这儿)?有一张[^,,。;;]*|这是我的[^,,。;;]*")
# a description of the input's problem ("it has a scratch on the bottle", "分辨率太低了"): context for its step
_PROBLEM = _rx(r"(?:\b(?:it|this|that|the (?:image|photo|picture|render|shot|logo|scan|file)|(?<![\w\-.])[\w\-.]{1,80}\."
               r"(?:png|jpe?g|webp))"
               r"(?:'s| is| has| looks| seems| got| gets| was)\b|^(?:is|has|looks|seems)\b).{0,80}?\b(?:scratch\w*|"
               r"stain\w*|dust\w*|nois[ey]|blurr?y?|dark|small|low|cut off|cropped|missing|damaged|torn|faded|grainy|"
               r"pixelated|tiny|washed out|out of focus|spots?|marks?|crack\w*)\b|"
               r"(?:分辨率|像素|清晰度|画质)(?:太|很|有点|比较|非常)?(?:低|差|小)|太(?:小|模糊|暗|亮|糊|低)|不够(?:清晰|大|亮)|"
               r"有(?:一道|一条|一个|个|些|点)?(?:划痕|污渍|污点|噪点|瑕疵|裂痕|折痕)|被(?:裁|切|截)(?:掉|断|了)|糊了|看不清")
_ACTION = _rx(r"\b(?:" + _VERBS_EN + r"|bigger|larger)\b|" + _VERBS_ZH)
_BARE_PARAM = _rx(r"^(?:(?:the |a |and |with |at )*(?:strength|weight|denoise|denoising|steps?|cfg|seed|scale|"
                  r"skeleton|size)|强度|权重|重绘幅度|降噪|步数|种子|骨架|尺寸|参数)$")
_DEICTIC = _rx(r"\b(?:this|that|the|my|these) (?:image|picture|photo|pic|photograph|result|one|output)s?\b|\bit\b|"
               r"这张图片?|这张照片|这幅画|这张|图片|照片|原图|它|结果|上面的图|生成的图")
_OTHER_VERBS = _rx(r"^(?:send|post|upload|email|e-mail|print|share|order|buy|call|search|download|tweet|publish|"
                   r"schedule|book|发送|发到|发给|上传|分享|打印|发布|下载|购买|搜索|邮件)")
_GENERATE = _rx(r"\b(?:draw|generate|create|render|paint|make|produce|design|illustrate|sketch|imagine)\b|"
                r"(?<![彩油漫国版插动壁字图书])画(?![风家])|生成|绘制|创作|来一张|出一张|制作|出图|出一?张图")
_NEW_PICTURE = _rx(r"(?:画|生成|绘制|创作)(?:一|两|\d+)?[张幅个只]|\b(?:draw|generate|create|render|paint|make) (?:me )?"
                   r"(?:an? |\d+ )?(?:new )?(?:image|picture|photo)")
_RULES: list[tuple[StageKind, re.Pattern]] = [
    ("text_template", _rx(r"template|模板")),
    ("regex", _rx(r"\bregex|正则|regular expression")),
    ("translate", _rx(r"translat|翻译|译成|译为")),
    ("summarize", _rx(r"summari[sz]|\bsummary|总结|摘要|概括")),
    ("describe", _rx(r"\bdescribe|反推|描述(?:一下)?(?:这张|图|照片|它)|caption (?:this|the|that) (?:image|photo|picture)|"
                     r"what(?:'s| is) in (?:this|the)|图(?:片)?里有什么|看图说话|image to prompt|interrogate")),
    ("caption", _rx(r"caption|slogan|tagline|文案|标语|配文|广告语|宣传语")),
    ("llm_write", _rx(r"\b(?:gpt|chatgpt|llm|deepseek|claude|qwen-?(?:max|plus|turbo))\b|通义千问|千问|(?<!放)大模型|语言模型|"
                      r"\bwrite\b|(?<![描特速手抄])写(?![实意生着有上真的是])")),
    ("audio", _rx(r"\bmusic\b|\bsong\b|\baudio\b|\bspeech\b|\bvoice ?over\b|\btts\b|sound effect|\bnarrat|音乐|歌曲|"
                  r"配乐|语音|配音|音效|朗读")),
    ("3d", _rx(r"\b3d (?:model|mesh|asset|object)|\bmesh\b|\.glb\b|三维模型|3d模型|3D模型|三维")),
    ("flf2v", _rx(r"\b(?:morph|transition|blend)(?:s|ing)? from\b|\bstarts? (?:at|with|from|on)\b.{1,80}\bends? "
                  r"(?:at|with|on)\b|从.{1,40}(?:过渡|渐变|变化|变)到|(?:当|作为|做)(?:开头|起始帧?|第一帧).{1,60}(?:当|作为|做)"
                  r"(?:结尾|结束帧?)|first frame.{0,80}last frame|start frame.{0,80}end frame|first and last frames?|首尾帧|"
                  r"首帧.{0,80}尾帧|首帧.{0,80}最后一帧|起始帧.{0,80}结束帧")),
    ("interpolate", _rx(r"interpolat|补帧|插帧|\bsmoother\b|更流畅|更丝滑|\brife\b|film vfi|frame rate up")),
]
_WRITTEN_PROMPT = _rx(r"提示词|描述|脚本|\bprompts?\b|\bdescription\b|\bscript\b")
_VIDEO = _rx(r"\bvideos?\b|视频|\banimate\b|\bbring\b.{1,60}?\bto life\b|\bcomes? alive\b|\banimation\b(?![- ]style)|动起来|动画(?!风|画风)|\bmovie\b|\bclip\b|\bt2v\b|\bi2v\b|短片|"
                   r"动态照片|实况照片|\blive photo\b")
_I2V = _rx(r"动态照片|实况照片|\blive photo\b|\banimate\b|\bbring\b.{1,60}?\bto life\b|\bcomes? alive\b|让.{0,6}?动起来|动起来|(?:turn|make|convert)\b.{0,20}?\binto an? (?:video|clip|animation)"
           r"(?: (?:where|of|showing|in which)\b)?|图生视频|image[- ]to[- ]video|\bi2v\b|make (?:it|this|the image) move|"
           r"(?:turn|make|convert) (?:it|this|the (?:image|picture|photo)) into a video")
_T2V = _rx(r"text[- ]to[- ]video|文生视频|\bt2v\b")
_V2V = _rx(r"video[- ]to[- ]video|\bv2v\b|视频转|视频风格|restyle the video")
# "scale the result down to 2x the original", "缩小到原图的2倍": a plain resize, never an upscale model
_RESIZE = _rx(r"\bscale (?:(?:it|this|that|them|the (?:result|image|picture|output|upscaled? (?:one|image|result))) )?"
              r"(?:back )?(?:down|up|back)\b|\bresize[sd]?\b|\bdownscal\w*|\bshrink|缩小|缩放|(?:尺寸)?调整到")
_POST: list[tuple[StageKind, re.Pattern]] = [
    ("remove_background", _rx(r"抠图|抠出|remove (?:the )?background|去(?:掉|除)[^,,。;;]{0,40}?的背景(?![里中上的])|"
                              r"\b(?:remove|erase|delete|drop|get rid of) (?:the |my |this )?[\w\-.]{1,60}'s background\b|"
                              r"\btransparent\b|去(?:掉|除)?背景(?![里中上的])|背景透明|"
                              r"透明背景|背景(?:抠掉|扣掉|去掉|删掉|去除|移除)|抠(?:掉|除)背景|cut out (?:the )?(?:subject|person|object)|\brembg\b|background removal")),
    ("face_restore", _rx(r"(?:fix|refine|restore|repair|improve|enhance|detail)(?:e?s)? (?:the |her |his |their )?"
                         r"faces?|\bface[- ]?restor(?:e|ation)|修复(?:人)?脸|修脸|面部修复|脸部修复|人脸修复|\bcodeformer\b|\bgfpgan\b|face ?detailer")),
    ("hires", _rx(r"hi-?res(?:olution)? fix|highres fix|\bhires\b|高清修复|upscale the latent|latent upscale|"
                  r"second (?:sampling )?pass|二次采样|潜空间放大|\brefine\b|精修|细化")),
    ("upscale", _rx(r"upscal|\benlarge|放大|超分|高清化|super[- ]?resolution|esrgan|ultrasharp|" + _RESIZE.pattern + "|"
                    r"increase the resolution|提高分辨率|\bmake (?:it|this|that|them|the (?:image|picture|photo|logo|"
                    r"result|render|scan)|[\w\-.]{1,80}\.(?:png|jpe?g|webp)) (?:\w+ )?(?:bigger|larger)\b|\b\d(?:\.\d)?x (?:bigger|larger)")),
    ("outpaint", _rx(r"outpaint|\bextend|\bexpand|\bzoom out\b|\bpad(?:ding)?\b|\bcontinue the (?:top|bottom|left|right|"
                     r"sides?|edges?)\b|扩图|扩展|扩充|往[左右上下]扩|四周|向[左右上下]|[左右上下]边?各?扩|扩成|扩到|扩为|扩宽|补全成|make it (?:wider|taller)|"
                     r"\bwider\b|\btaller\b|延展|外扩|uncrop|\badd (?:\d{1,5} ?(?:px|pixels?) )?(?:more |extra )?(?:\w+ )?"
                     r"(?:on|at|to) (?:the )?(?:top|bottom|left|right|sides?)\b|\b\d{1,5} ?(?:px|pixels?) (?:more|extra)\b|"
                     r"(?:视野|画面|视角)再?(?:拉|扩|放)?(?:宽|大|广)|拉宽|(?:顶部|底部|上方|下方|左侧|右侧)(?:加|补|多|扩)")),
    ("invert", _rx(r"\binvert|反相|反色|负片|颜色反转|反转颜色")),
    ("inpaint", _rx(r"inpaint|局部重绘|(?:the )?\bmask(?:ed)?\b(?: (?:area|region|part))?(?: of)?|遮罩|蒙版|"
                    r"repaint (?:the|this)")),
    ("reference", _rx(r"ip-?adapter|in the style of (?:this|that|the|my) (?:image|picture|photo)|参考这张图|参考图|"
                      r"参考(?:这张)?(?:图片|照片)|风格参考|\bredux\b|reference (?:image|picture|photo)|"
                      r"like this (?:image|picture|photo)|和这张图一样|(?:style|mood|colou?rs?|palette|look|feel|vibe|tone|lighting|"
                      r"atmosphere) of [\w\-.]{1,80}\.(?:png|jpe?g|webp)|[\w\-.]{1,80}\.(?:png|jpe?g|webp) as (?:an? |the )?"
                      r"(?:style |colou?r |mood )?reference|(?:参考|按照?|照着|仿照|模仿|借鉴)\s?[\w\-.]{1,80}\.(?:png|jpe?g|webp)"
                      r"\s?的?(?:风格|画风|色调|配色|氛围|感觉|调子|光影|质感)|(?:以|用|拿|把)\s?[\w\-.]{1,80}\.(?:png|jpe?g|webp)\s?"
                      r"(?:为|作为|做|作|当)(?:风格)?参考|参考\s?[\w\-.]{1,80}\.(?:png|jpe?g|webp)")),
]
# an explicit kind word ("用canny提取线条") wins over a generic one (线条, edges): explicit ones are tried first
_CONTROL_NAMED = [("canny", _rx(r"(?<![A-Za-z])canny(?![A-Za-z])")), ("pose", _rx(r"(?<![A-Za-z])open ?pose(?![A-Za-z])")),
                  ("depth", _rx(r"depth ?map|深度图|(?<![A-Za-z])(?:midas|zoe ?depth)(?![A-Za-z])")),
                  ("lineart", _rx(r"line ?art|线稿")), ("scribble", _rx(r"(?<![A-Za-z])scribble")),
                  ("softedge", _rx(r"soft ?edge|(?<![A-Za-z])hed(?![A-Za-z])")),
                  ("mlsd", _rx(r"(?<![A-Za-z])mlsd(?![A-Za-z])"))]
_CONTROL = [("canny", _rx(r"\bcanny\b|\bedges?\b|边缘|轮廓")), ("depth", _rx(r"\bdepth\b|深度图?")),
            ("pose", _rx(r"\bopen ?pose\b|\bpose\b|\bskeleton\b|姿势|姿态|骨架|骨骼图?|动作")), ("lineart", _rx(r"line ?art|线稿|线条")),
            ("scribble", _rx(r"\bscribble|涂鸦|草图")), ("tile", _rx(r"\btile\b")), ("softedge", _rx(r"soft ?edge|\bhed\b")),
            ("normal", _rx(r"normal map|法线")), ("seg", _rx(r"segmentation|语义分割")), ("mlsd", _rx(r"\bmlsd\b"))]
_CONTROL_CONTEXT = _rx(r"control ?net|(?<![\w\-.])[\w\-.]+\.(?:png|jpe?g|webp)|(?:this|that|the|my) (?:image|picture|photo)|"
                       r"\bmap\b|这张图|这张照片|图的|图片的|照片的|按照|按这个|参考|same pose|pose (?:from|of)|"
                       r"edges? (?:from|of)|depth (?:from|of)")
_REMOVE = _rx(r"\b(?:remove|erase|get rid of|delete|take out|eliminate)\b|去掉|删除|删掉|移除|去除|擦除|擦掉|抹掉|抹去|P掉|p掉")
_REPLACE = _rx(r"\b(?:replace|swap)\b|换成|替换|\bchange\b.{1,80}?\b(?:to|into)\b")
_RESTYLE = _rx(r"\b(?:turn|convert|transform|make|change|redraw|render|repaint|restyle|stylize|stylise)\b|"
               r"改成|变成|转成|转换成|转为|改为|做成|画成|风格化|转(?=[^\s,,。]{1,10}?(?:风格|画风|风))")
_IMG2IMG = _rx(r"\b(?:turn|convert|transform|redraw|based on|use .{0,40} as (?:the )?(?:base|starting point)|"
               r"img2img|image to image|from this (?:image|photo))\b|变成|转成|改成|重绘|为基础|图生图|基于")
_EDIT = _rx(r"\b(?:make|add|put|give|change|turn|colou?r|recolou?r|edit|fix|adjust|brighten|darken)\b|"
            r"加上?|添加|给|让|改|把|换|戴|变")
_SAVE = _rx(r"\b(?:save|store|export|download)\b|保存|存成|存为|存下|导出")
_DESCRIPTION_ONLY = _rx(r"^[\W\d_]*$")


@dataclass
class _State:
    stages: list[Stage] = field(default_factory=list)
    branches: int = 1
    pending: list[Slots] = field(default_factory=list)  # settings stated before any stage
    wanted: int = 0  # pictures a list announced ("three images: …")


def _produces_image(stage: Stage) -> bool:
    return stage.kind not in ("t2v", "i2v", "v2v", "flf2v", "interpolate", "llm_write", "caption", "describe",
                              "summarize", "translate", "text_template", "regex", "audio", "3d", "save", "unknown")


def _classify(text: str, slots: Slots, state: _State) -> StageKind | None:
    """The kind a clause asks for; None when it is only description (or only settings)."""
    for kind, pattern in _RULES:
        if pattern.search(text) and (kind != "text_template" or "{" in text) and \
                (kind != "llm_write" or not _VIDEO.search(text) or _WRITTEN_PROMPT.search(text)) and \
                (kind != "llm_write" or not _picture_settings(text, slots)) and \
                (kind != "flf2v" or len(slots.images) > 1 or _VIDEO.search(text) or re.search(r"frame|帧", text, IC)) and \
                (kind != "describe" or not _LLM_NAMED.search(text) or slots.images or _DEICTIC.search(text)):
            return kind  # "ask an LLM to describe a cabin": the LLM writes; describing an image needs one
        if kind == "describe" and pattern.search(text):
            return "llm_write"
    if slots.videos and not _VIDEO.search(text) and _RESTYLE.search(text):
        return "v2v"
    if _VIDEO.search(text) or slots.videos:
        return _video_kind(text, slots, state)
    if _MOTION.search(text) and (slots.images or _DEICTIC.search(text) or (state.stages and state.stages[-1].kind == "i2v")):
        return "i2v"  # "让人物眨眼微笑" on a picture: only a video can blink
    masked = any(_MASK_FILE.search(f) for f in slots.images)
    for kind, pattern in _POST:
        if pattern.search(text) or (kind == "inpaint" and masked):
            if kind == "reference" and _STRONG_CONTROL.search(text):
                return "controlnet"  # "ControlNet canny,参考图 sketch.png": the control image
            if kind == "inpaint" and _REMOVE.search(text):
                return "remove"  # "remove the trash can, the area is marked in mask.png"
            if kind == "inpaint" and _REPLACE.search(text) and not _is_style_change(text, slots):
                return "replace"
            return kind
    previous_image = bool(state.stages) and _produces_image(state.stages[-1])
    image_context = bool(slots.images) or _DEICTIC.search(text) is not None or previous_image
    if image_context and _control(text, slots):
        return "controlnet"
    if _SAVE.search(text) and not _GENERATE.search(text):
        return "save"
    if _REMOVE.search(text):
        return "remove"
    if image_context and _GLOBAL_CHANGE.search(text):
        return "img2img"  # "change the season to winter, same composition": the whole picture, not a masked part
    if _REPLACE.search(text):
        return "restyle" if _is_style_change(text, slots) else "replace"
    if image_context and not (_NEW_PICTURE.search(text) and not slots.images) and \
            (kind := _image_kind(text, slots)):
        return kind
    if _OTHER_VERBS.search(text):
        return "unknown"
    return "generate" if _GENERATE.search(text) else None


_MOTION = _rx(r"眨眼|眨一?下眼|\bblink(?:s|ing)?\b|\bwink(?:s|ing)?\b|挥手|\bwav(?:e|es|ing) (?:her|his|their) hands?\b")
_GLOBAL_CHANGE = _rx(r"\b(?:change|turn|switch|make)\b (?:the )?(?:season|weather|time of day|time|lighting|mood|"
                     r"atmosphere)\b|(?:季节|天气|时间|时段|光线|氛围)(?:换成|改成|变成|改为|换为|变为)")
_LLM_NAMED = _rx(r"\b(?:gpt|chatgpt|llm|deepseek|claude|qwen)|千问|大模型|语言模型")


def _picture_settings(text: str, slots: Slots) -> bool:
    """"…特写,采样步数40,CFG 7.5,种子 42": sampling settings, a size or a seed (and no LLM named, no prompt to
    write) mean a picture, whatever verb the words use."""
    return (slots.settings or slots.width is not None) and not _LLM_NAMED.search(text) and \
        not _WRITTEN_PROMPT.search(text)


def _video_kind(text: str, slots: Slots, state: _State) -> StageKind:
    if slots.videos or _V2V.search(text):
        return "v2v"
    if _T2V.search(text):
        return "t2v"
    previous_image = bool(state.stages) and _produces_image(state.stages[-1])
    if slots.images or _I2V.search(text) or previous_image or \
            re.search(r"^(?:turn|make|convert)?\s*(?:it|this)\b|把(?:它|这张图|图片|照片)", text, IC):
        return "i2v"
    return "t2v"


def _image_kind(text: str, slots: Slots) -> StageKind | None:
    if slots.style and _RESTYLE.search(text) or _is_style_change(text, slots):
        return "restyle"
    if slots.style and not clean_prompt(_DEICTIC.sub(" ", slots.text.replace(slots.style, " "))):
        return "restyle"  # "photo.png in watercolor style": a style and nothing else
    if (slots.images and (_IMG2IMG.search(text) or slots.denoise is not None)) or \
            re.search(r"\bimg2img\b|图生图|重绘", text, IC):
        return "img2img"
    if _EDIT.search(text):
        return "edit"
    if slots.images:
        return "img2img"  # a file and no verb: redrawn, unless a later step of the request uses it (`_take_input`)
    return None


_STYLE_TARGET = _rx(r"(?:into|to|as|成|为)\s?(?:an? )?(?:[\w\-]{1,30} ){0,2}?(?:painting|watercolou?r|sketch|drawing|"
                    r"illustration|cartoon|anime|comic|pixel art|style|oil|ink|manga|风格|画风|水彩|油画|"
                    r"素描|水墨|动漫|漫画|卡通|像素|二次元|国画|浮世绘)(?![\w-]{0,30} (?:city|street|scene|landscape|world))")


def _is_style_change(text: str, slots: Slots) -> bool:
    """"把这张图改成水彩画风格", "turn it into a watercolor painting": the whole picture changes style."""
    return (slots.style is not None or _STYLE_TARGET.search(text) is not None) and _RESTYLE.search(text) is not None


_STRONG_CONTROL = _rx(r"control ?net|骨架|骨骼图|\bskeleton\b|canny|\bmlsd\b|soft ?edge|open ?pose|depth map|深度图|line ?art|线稿|scribble|边缘|姿势|姿态")


def _control(text: str, slots: Slots) -> str | None:
    strong = _STRONG_CONTROL.search(text)
    if not strong and not _CONTROL_CONTEXT.search(text):
        return None
    if not strong and not slots.images:
        return None
    for name, pattern in _CONTROL_NAMED:
        if pattern.search(text):
            return name
    for name, pattern in _CONTROL:
        if pattern.search(text) and (strong or _CONTROL_CONTEXT.search(text)):
            if name in ("tile", "pose", "depth") and not re.search(r"control ?net|open ?pose|depth map|深度|姿|骨|skeleton|"
                                                                  r"(?:pose|depth|tile) (?:from|of)|same pose", text, IC):
                continue
            return name
    return "canny" if re.search(r"control ?net", text, IC) else None


# ---- building a stage ------------------------------------------------------------------------------------------
_NUM = r"(\d+(?:\.\d+)?)"
_CANNY_LOW = _rx(r"(?:低阈值|下阈值|低门限|\blow(?:er)?[ _-]?threshold|\blow)\s?(?:of|at|=|:|:|为|是|设为)?\s?" + _NUM)
_CANNY_HIGH = _rx(r"(?:高阈值|上阈值|高门限|\bhigh(?:er)?[ _-]?threshold|\bhigh)\s?(?:of|at|=|:|:|为|是|设为)?\s?" + _NUM)
_CANNY_PAIR = _rx(r"(?:阈值|\bthresholds?)\s?(?:of|=|:|:|为|是|设为)?\s?" + _NUM + r"\s?(?:[/~～\-到和,,、]|and|to)\s?" + _NUM)


def _canny_threshold(value: str) -> float:
    """Canny's thresholds are 0.01–0.99 in ComfyUI; a value on OpenCV's 0–255 scale ("100/200") is rescaled."""
    number = float(value)
    return round(min(0.99, max(0.01, number / 255 if number > 1 else number)), 3)


def _canny_thresholds(text: str) -> dict[str, float]:
    """"低阈值0.2高阈值0.6", "thresholds 100/200", "low threshold 0.3": the Canny thresholds stated."""
    found: dict[str, float] = {}
    if m := _CANNY_PAIR.search(text):
        found["low_threshold"], found["high_threshold"] = _canny_threshold(m.group(1)), _canny_threshold(m.group(2))
    if m := _CANNY_LOW.search(text):
        found["low_threshold"] = _canny_threshold(m.group(1))
    if m := _CANNY_HIGH.search(text):
        found["high_threshold"] = _canny_threshold(m.group(1))
    return found


_VIDEO_KINDS = {"t2v", "i2v", "v2v", "flf2v", "interpolate"}
_PROMPTED = {"generate", "img2img", "restyle", "inpaint", "controlnet", "reference", "t2v", "i2v", "v2v", "flf2v", "3d"}
_INSTRUCTED = {"edit", "llm_write", "caption", "describe", "summarize", "translate", "text_template", "regex", "audio"}
_NEEDS_IMAGE = {"img2img", "restyle", "edit", "inpaint", "remove", "replace", "outpaint", "upscale", "controlnet",
                "reference", "i2v", "flf2v", "describe", "face_restore", "remove_background", "invert"}
_LEFTOVER_KINDS = {"upscale", "hires", "face_restore", "remove_background"}
_TRIGGERS: dict[str, re.Pattern] = {kind: pattern for kind, pattern in _RULES + _POST}
_VIDEO_PHRASE = _rx(_T2V.pattern + r"|(?:\b(?:an?|the|one) )?(?:short )?(?:video|clip|animation|movie)s?\b"
                    r"(?: (?:of|showing|where|about|that|which)\b)?|"
                    r"(?:生成|做|制作)?(?:一段|一个|一部)?(?:视频|短片|动画)[::]?|" + _VIDEO.pattern)
_TRIGGERS.update({"flf2v": _rx(_RULES[9][1].pattern + r"|first frame|last frame|start frame|end frame|首帧|尾帧|最后一帧|"
                                                     r"\b(?:morph|transition|blend)(?:s|ing)?(?: from)?\b|\bstarts? "
                                                     r"(?:at|with|from|on)\b|\bends? (?:at|with|on)\b|\b(?:from|to|and)\b|"
                                                     r"(?:用|从)|(?:过渡|渐变|变化|变)到?|(?:当|作为|做)(?:开头|起始帧?|第一帧|结尾|"
                                                     r"结束帧?)|"
                                                     + _VIDEO_PHRASE.pattern),
                  "reference": _rx(r"(?:以|用|拿|把)?\s*(?:为|作为|做|作|当)\s*(?:风格)?参考图?|参考图|"
                                   r"(?:, ?)?(?:的)?(?:风格|画风|色调|配色|氛围|感觉|调子|光影|质感)|(?:in )?the style(?: of)?|"
                                    r"(?:\b(?:that|which) )?\b(?:borrows|takes|uses|using|with|match(?:es|ing)?|copy(?:ing)?|"
                                    r"follow(?:s|ing)?) (?:the )?(?:(?:colou?rs?|mood|style|look|palette|feel|vibe|tone|"
                                    r"lighting|atmosphere)(?:,? and |, |\b))+(?:of\b)?|\b(?:colou?rs?|mood|palette|look|"
                                    r"feel|vibe|tone|lighting|atmosphere) of\b|(?:\busing )?\bas (?:an? |the )?(?:style |"
                                    r"colou?r |mood )?reference\b|参考|按照?|照着|仿照|模仿|借鉴|" + _POST[-1][1].pattern),
                  "3d": _rx(r"(?:\b(?:an?|the) )?\b3d (?:model|mesh|asset|object)s?\b(?: of\b)?|三维模型|3[dD]模型|三维"),
                  "t2v": _VIDEO_PHRASE, "i2v": _rx(_I2V.pattern + "|" + _VIDEO_PHRASE.pattern), "v2v": _VIDEO_PHRASE,
                  "restyle": _rx(_RESTYLE.pattern + r"|\b(?:into|as)\b"), "img2img": _rx(_IMG2IMG.pattern + r"|\binto\b"),
                  "save": _SAVE,
                  "controlnet": _rx(r"\bas (?:the |an? )?(?:open ?pose |pose |depth |canny )?(?:skeleton|control(?: image)?|"
                                    r"map|guide)\b|(?:当|作为|做)(?:骨架|骨骼图?|控制图)|骨架|骨骼图?|\bskeleton\b|"
                                    + _CANNY_PAIR.pattern + "|" + _CANNY_LOW.pattern + "|" + _CANNY_HIGH.pattern +
                                    r"|参考图|控制图|control image|control ?net|\buse\b|\bwith\b|\bfollow(?:ing)?\b|用|按照?|参考|"
                                    r"提取|抽取|\bextract(?:ing)?\b|\bpull(?:ing)? out\b|\bdetect(?:ing)?\b|的?(?:canny|open ?pose|"
                                    r"pose|depth(?: map)?|line ?art|scribble|边缘|深度图?|姿势|姿态|线稿|线条|轮廓)"
                                    r"(?: edges?| map| lines?| outlines?)?"
                                    r"(?: (?:from|of)\b)?|\bto\b")})
_TRIGGERS["v2v"] = _rx(_VIDEO_PHRASE.pattern + "|" + _RESTYLE.pattern + r"|\b(?:into|as)\b")
_LLM_NAMES = _rx(r"(?:(?:have|let|ask|use|using|with) )?(?:the |an? )?\b(?:gpt(?:-[\w.]+)?|chatgpt|llm|deepseek|claude|"
                 r"qwen(?:-[\w]+)?)\b(?: to)?|(?:用|让|请)?(?:通义千问|千问|大模型|语言模型)(?:来)?")
_OUTPAINT_SIDE = [("left", _rx(r"\bleft\b|左")), ("right", _rx(r"\bright\b|右")), ("top", _rx(r"\btop\b|\bup\b|上")),
                  ("bottom", _rx(r"\bbottom\b|\bdown\b|下"))]
_OUTPAINT_PIXELS = _rx(r"(?<!\d)(\d{1,5}) ?(?:px|pixels?|像素)|\bby (\d{1,5})\b")
_ALL_SIDES = _rx(r"all (?:four )?sides|every side|四周|四边|all around|各个方向")
_HORIZONTAL = _rx(r"wider|horizontal|左右|两侧|both sides|sideways")
_VERTICAL = _rx(r"taller|vertical|上下")


@dataclass
class _Context:
    checkpoints: list[str]
    loras: list[str]
    upscale_models: list[str]


def _build(kind: StageKind, text: str, slots: Slots, ctx: _Context) -> Stage:
    if kind == "reference":
        slots.style = None  # the style is the reference image's, not words
    stage = Stage(kind=kind, text=text)
    _apply_slots(stage, slots)
    _files_to_stage(stage, slots, ctx)
    if kind in _PROMPTED:
        stage.prompt = _prompt(kind, slots) or None
    elif kind in _INSTRUCTED:
        stage.prompt = _instruction(text) or None
    if kind == "controlnet":
        stage.control = _control(text, slots) or "canny"
        if m := _CN_STRENGTH.search(text):
            stage.extra["strength"] = min(2.0, float(m.group(1)))
        stage.extra.update(_canny_thresholds(text))
        if stage.control in ("depth", "pose") and _READY_MAP.search(text) and not _ESTIMATE.search(text):
            stage.extra["is_map"] = True  # "depth.png 深度图", "pose.png as the openpose skeleton": used as given
    elif kind in ("remove", "replace", "edit"):
        stage.target, stage.replacement = _target(kind, slots.text)
        if kind == "replace":
            stage.prompt = stage.replacement
        if stage.mask and stage.target and _MASK_REGION.search(stage.target):
            stage.target = None  # "mask.png遮住的地方": the mask says where, the words add nothing to avoid
        if kind in ("remove", "edit") and stage.mask and (m := _FILL.search(slots.text)) and \
                (fill := clean_prompt(m.group(1))):
            stage.kind, stage.prompt = "remove", fill  # "擦掉,补成草地": the region is repainted as the fill
    elif kind == "img2img" and _GLOBAL_CHANGE.search(text) and (new := _target("replace", slots.text)[1]):
        stage.prompt = clean_prompt(re.split(r"[,,;;]", new)[0]) or stage.prompt
    elif kind == "restyle" and not stage.style:
        stage.style = re.sub(r"^(?:an?|the) ", "", stage.prompt or "", flags=IC) or None
    elif kind == "inpaint" and (what := _inpaint_prompt(slots.text)):
        stage.prompt = what
    elif kind == "outpaint":
        stage.direction = _outpaint(text)
        if (aspect := _aspect(text)) and not _OUTPAINT_PIXELS.search(text):
            stage.extra["aspect"] = aspect  # the padding follows from the input's size, when the build knows it
            stage.direction = {}
    elif kind == "translate" and (m := re.search(r"(?:into|to|成|为)\s?(" + "|".join(LANGUAGES) + ")", text, IC)):
        stage.language = LANGUAGES[m.group(1).lower()]
    elif kind == "text_template":
        stage.extra["template"] = next((q for q in re.findall(QUOTED, text) if "{" in q), None)
    elif kind == "upscale" and _RESIZE.search(text) and not re.search(r"upscal|放大|超分|enlarge", text, IC):
        stage.extra["resize"] = True
    elif kind == "upscale":
        stage.with_model = stage.with_model or bool(re.search(
            r"\bwith (?:an? |the )?(?:upscal(?:e|ing) )?model\b|esrgan|ultrasharp|swinir|超分模型|放大模型|模型放大|"
            r"\b\d{1,2}x[-_][\w\-]{1,60}", text, IC))
        if not stage.model_hint and (m := re.search(r"(?<![A-Za-z0-9_\-.])(\d{1,2}x[-_][A-Za-z0-9_\-]{1,60}|"
                                                    r"(?:real-?)?esrgan[A-Za-z0-9_\-]{0,60}|ultrasharp|swinir)",
                                                    text, IC)):
            stage.model_hint = m.group(1)
    return stage


_READY_MAP = _rx(r"depth ?map|深度图|骨架|骨骼图|\bskeleton\b|pose (?:image|map)|姿势图|姿态图")
_ESTIMATE = _rx(r"提取|估计|估算|检测|识别|\bextract|\bestimat|\bdetect|\bfrom (?:this|the|my) (?:photo|image|picture)")
_CN_STRENGTH = _rx(r"(?:strength|weight|强度|权重|控制强度) ?(?:of|at|=|:|:|为)? ?(\d*\.\d+|[0-2](?![\d.]))")
_INPAINT_WHAT = _rx(r"\b(?:as|with|into|to show|showing)\b ?|改成|画成|画上|换成|重绘成|变成|替换成|补成")
_MASK_FILE = _rx(r"mask|遮罩|蒙版")


_MASK_REGION = _rx(r"遮住|遮罩|蒙版|涂白|白色(?:的)?(?:区域|部分)|\bmask|\bcovered\b|\bmarked\b|\bthe (?:area|region)\b")
_FILL = _rx(r"(?:补成|补上|填充成?|填成|填上|补全成?|换成|改成|\bfill(?:ed)? (?:it |them |that |the (?:area|region|hole|gap|"
            r"space) )?(?:in )?with\b|\breplace(?:d)? (?:it |them )?with\b)\s?([^,,。;;.!?!?]{1,120})")


def _inpaint_prompt(text: str) -> str:
    """What the masked region becomes: the words after the last "as"/"with"/"改成" that has words after it."""
    last = None
    for m in _INPAINT_WHAT.finditer(text):
        if re.search(r"\w", text[m.end():m.end() + 40]):
            last = m
    return clean_prompt(text[last.end():]) if last else ""


def _apply_slots(stage: Stage, slots: Slots) -> None:
    """Put a clause's values on a stage, keeping any it already has; a video clause's timing, an upscale's scale."""
    for name in ("count", "width", "height", "denoise", "model_hint"):
        if getattr(stage, name) is None:
            setattr(stage, name, getattr(slots, name))
    if stage.kind in ("upscale", "hires") and stage.scale is None:
        stage.scale = slots.scale
    if stage.kind in _VIDEO_KINDS:
        for name in ("frames", "fps", "seconds"):
            if getattr(stage, name) is None:
                setattr(stage, name, getattr(slots, name))
    if slots.negatives:
        stage.negative = ", ".join(([stage.negative] if stage.negative else []) + slots.negatives)
    if slots.style and not stage.style:
        stage.style = slots.style
        if stage.prompt and slots.style not in stage.prompt:
            stage.prompt = f"{stage.prompt}, {slots.style}"


def _files_to_stage(stage: Stage, slots: Slots, ctx: _Context) -> None:
    masks = [f for f in slots.images if "mask" in f.lower() or "遮罩" in f or "蒙版" in f]
    images = [f for f in slots.images if f not in masks]
    if masks:
        stage.mask = masks[0]
    if images and stage.kind not in ("generate", "save"):
        stage.image = images[0]
        if stage.kind == "flf2v" and len(images) > 1:
            stage.extra["last_image"] = images[1]
    elif images and stage.kind == "generate":
        stage.extra["files"] = images
    if slots.videos:
        stage.video = slots.videos[0]
    if slots.texts:
        stage.extra["text_file"] = slots.texts[0]
    models = [f for f in slots.models if f not in ctx.checkpoints and f not in ctx.loras
              and "lora" not in f.lower()]
    if models:
        stage.model_hint = models[0]
        if stage.kind == "upscale" or models[0] in ctx.upscale_models:
            stage.with_model = stage.kind == "upscale"
    if stage.kind == "save" and (slots.images or slots.videos or slots.texts):
        stage.extra["filename"] = (slots.images + slots.videos + slots.texts)[0]


def _prompt(kind: StageKind, slots: Slots) -> str:
    text = slots.text
    if kind != "generate":
        text = _DEICTIC.sub(" ", _TRIGGERS[kind].sub(" ", text)) if kind in _TRIGGERS else _DEICTIC.sub(" ", text)
        text = re.sub(r"^\s*(?:(?:(?:into|to|as|in)\b|把|将|做成|变成|转成|成|为)\s*)+", " ", text.strip(EDGE), flags=IC)
    prompt = re.sub(r"(?<=[\u4e00-\u9fff])的$", "", clean_prompt(text))  # "水彩风格的(视频)": the trigger went
    if slots.style and prompt and slots.style not in prompt:
        prompt = f"{prompt}, {slots.style}"
    return prompt or (slots.style or "")


_FILE_PHRASE = _rx(r"(?:\b(?:in|of|on|from|for) )?(?:" + FILE.pattern + r")(?:里的?|中的?|上的?|的)?")
_INSTRUCTION_LEAD = _rx(r"^(?:please |pls |kindly |can you |could you |then |and |also |请你?|帮我|麻烦你?|然后|再|接着|最后)+")


def _instruction(text: str) -> str:
    """An instruction for a model that reads instructions (an edit model, an LLM): filler off, words kept."""
    text = _LLM_NAMES.sub(" ", _FILE_PHRASE.sub(" ", text))
    text = CJK_GAP.sub("", re.sub(r"\s+", " ", text)).strip(EDGE)
    return re.sub(r"^for\b ?", "", _INSTRUCTION_LEAD.sub("", text).strip(EDGE), flags=IC).strip(EDGE)


_REMOVE_EN = _rx(r"\b(?:remove|erase|get rid of|delete|take out|eliminate) (.{1,120})")
_REMOVE_ZH = _rx(r"(?:把|将)(.{1,40}?)(?:去掉|删掉|删除|移除|去除|擦掉|抹掉|P掉)|(?:去掉|删除|删掉|移除|去除|擦除|抹掉)(.{1,40})")
_REPLACE_EN = _rx(r"\b(?:replace|swap) (.{1,80}?) (?:with|for|by) (.{1,120})|\bchange (.{1,80}?) (?:to|into) (.{1,120})")
_REPLACE_ZH = _rx(r"换成|替换成|替换为|换为|改成|改为|变成|变为")
_SCENE_WORDS = _rx(r"^(?:图中的?|图里的?|照片里的?|画面中的?|这张图里?的?|里的?|中的?|上的?|in the (?:image|picture|photo) )|"
                   r" (?:from|in|of) (?:the |this )?(?:image|picture|photo|background|scene|it)\b.*$| (?:from|in|of|on)(?= ?[,,.]|$).*$")


def _target(kind: StageKind, text: str) -> tuple[str | None, str | None]:
    """What a remove/replace/edit acts on, and what it becomes: "replace the red car with a green one" →
    ("the red car", "a green car")."""
    text = re.sub(r"\s+", " ", text).strip(EDGE)
    if kind == "remove":
        m = _REMOVE_EN.search(text) or _REMOVE_ZH.search(text)
        return (_tidy(m.group(1) or m.group(2)) if m else None), None
    m = _REPLACE_EN.search(text)
    if m:
        target, new = _tidy(m.group(1) or m.group(3)), _tidy(m.group(2) or m.group(4))
    elif m := _REPLACE_ZH.search(text):
        # the target is what comes before the verb, from "把"/"将" when one is near
        before = text[max(0, m.start() - 40):m.start()]
        lead = max(before.rfind("把"), before.rfind("将"))
        target, new = _tidy(before[lead + 1:]), _tidy(text[m.end():m.end() + 60])
    else:
        return None, None
    if new and target and re.search(r"\bones?$", new):
        noun = target.split()[-1]
        new = re.sub(r"\bones?$", noun, new)
    return target, new


def _tidy(text: str | None) -> str | None:
    if not text:
        return None
    text = _SCENE_WORDS.sub("", text.strip())
    text = trim_dangling(re.sub(r"^(?:把|将)", "", text).strip(EDGE))
    return text.strip(EDGE).removesuffix("的").removeprefix("的") or None


_ASPECT = _rx(r"(?<![\d.:])(\d{1,2}) ?[::比] ?(\d{1,2})(?![\d.:])|\b(square)\b|正方形|方图|方形")


def _aspect(text: str) -> list[int] | None:
    """"扩成16:9的横图", "extend to 4:3", "make it square": the aspect ratio the outpaint should reach."""
    m = _ASPECT.search(text)
    if not m:
        return None
    if m.group(1):
        width, height = int(m.group(1)), int(m.group(2))
        return [width, height] if width and height else None
    return [1, 1]


def _outpaint(text: str) -> dict[str, int]:
    m = _OUTPAINT_PIXELS.search(text)
    pixels = int(m.group(1) or m.group(2)) if m else 256
    if _ALL_SIDES.search(text):
        sides = ["left", "right", "top", "bottom"]
    else:
        sides = [name for name, pattern in _OUTPAINT_SIDE if pattern.search(text)]
        if not sides:
            sides = ["left", "right"] if _HORIZONTAL.search(text) else ["top", "bottom"] if _VERTICAL.search(text) \
                else ["left", "right", "top", "bottom"]
    return {side: pixels for side in sides}


# ---- branches --------------------------------------------------------------------------------------------------
_BRANCH_ZH = re.compile(r"(两|二|2|三|3) ?[张幅](?:不同的)?(?:图片?|照片|画|插画)? ?[::,,]? ?")
_BRANCH_ZH_ITEM = re.compile(r"[,,;;、]? ?(?:另外?一张|第[一二三123]张|一张)(?:图)?(?:是|为|画|:|:)? ?")
_BRANCH_EN = re.compile(r"\b(two|2|three|3) (?:different |separate )?(?:images|pictures|photos|illustrations|"
                        r"paintings|drawings)\b ?[:,\-—]? ?", IC)
_BRANCH_EN_ITEM = re.compile(r"(?:^|[,;] ?(?:and )?|\band )(?:one (?:of|with|showing|is)|another(?: (?:of|with|"
                             r"showing|is))?|the other(?: (?:of|with|showing|is))?|the (?:first|second|third)"
                             r"(?: one)?(?: (?:of|is|shows))?)\b ?", IC)


@dataclass
class _Split:
    lead: str          # the words before the list ("用sdxl画"): shared by every picture
    parts: list[str]   # each picture's own words
    wanted: int        # pictures announced; more than len(parts) when the list goes on after a ";"


def _branches(text: str) -> _Split | None:
    """Two or three pictures listed one by one ("two images: a beach and a city", "两张图:一张是…,一张是…")."""
    if m := _BRANCH_ZH.search(text):
        n, rest = cn_number(m.group(1)) or 0, text[m.end():]
        if not _BRANCH_ZH_ITEM.search(rest):
            return None
        parts = [p for p in _BRANCH_ZH_ITEM.split(rest) if p.strip(EDGE)]
    elif m := _BRANCH_EN.search(text):
        n, rest = EN_NUMBERS.get(m.group(1).lower()) or int(m.group(1)), text[m.end():]
        listed = _BRANCH_EN_ITEM.match(rest) or _BRANCH_EN_ITEM.search(rest)
        if not listed and not re.search(r"[:\-—]", m.group()):
            return None  # "2 images, sdxl, seed 1 and 2" is a count, not a list
        parts = [p for p in _BRANCH_EN_ITEM.split(rest) if p.strip(EDGE)]
        for separator in (r";", r",? and ", r","):
            if len(parts) == n:
                break
            parts = [p for p in re.split(separator, rest, flags=IC) if p.strip(EDGE)]
    else:
        return None
    parts = [p for p in parts if re.search(r"[^\W\d_]", p)]
    colon = re.search(r"[::\-—]", m.group()) is not None
    if n > 1 and (len(parts) == n or (colon and 0 < len(parts) < n)):
        return _Split(text[:m.start()], parts, n)
    return None


_VERSIONS_EN = _rx(r"\b(two|three|2|3) (?:different |separate )?(?:versions|styles|variants|variations|looks|takes)\b"
                  r"(?: of (?P<base>[^:;—]{1,80}?))?(?: ?[:—-] ?| (?:in|as)\b ?|$)")
_VERSION_ITEM_EN = _rx(r"(?:^|[,;] ?(?:and )?|\band |\bor )(?:one|another|the other|the (?:first|second|third)(?: one)?)?\b"
                       r" ?(?:(?:is|as|in|with|looks like)\b ?)?")
_VERSIONS_ZH = _rx(r"分别(?:改成|变成|转成|做成|画成|处理成|渲染成|生成|画)(?P<a>[^,,。;;::]{2,40}?)(?:(?:两|三|2|3)(?:个|种)"
                  r"(?:不同的?)?(?:版本|风格|画风))?(?=[,,。;;]|$)|(?:两|三|2|3)(?:个|种)(?:不同的?)?(?:版本|风格|画风)"
                  r"[::] ?(?P<b>[^。;;]{2,60})|(?:改成|变成|转成|做成|画成|成)(?P<c>[^,,。;;::]{2,40}?)(?:两|三|2|3)(?:个|种)"
                  r"(?:不同的?)?(?:版本|风格|画风)")
_VERSION_ITEM_ZH = re.compile(r"[和与跟及、,,]|以及|一个是|一张是|一种是|另一个是|另一张是")
_VERSION_EDGE = _rx(r"^(?:(?:an?|the|one|as|in|into|a|是|为)\b ?)+|(?: (?:style|version|look)|风格|画风|版本?|的)+$")


def _versions(text: str) -> list[str] | None:
    """"two versions: one watercolor, one pixel art", "分别改成水彩和油画两个版本": one picture per listed style."""
    if m := _VERSIONS_EN.search(text):
        n = EN_NUMBERS.get(m.group(1).lower()) or int(m.group(1))
        rest = text[m.end():]
        parts = [p for p in _VERSION_ITEM_EN.split(rest) if p and p.strip(EDGE)]
    elif m := _VERSIONS_ZH.search(text):
        n = 0
        parts = [p for p in _VERSION_ITEM_ZH.split(m.group("a") or m.group("b") or m.group("c")) if p.strip(EDGE)]
    else:
        return None
    styles = [_VERSION_EDGE.sub("", p.strip(EDGE)).strip(EDGE) for p in parts]
    styles = [x for x in styles if x and len(x) <= 40 and re.search(r"[^\W\d_]", x)]
    if len(styles) < 2 or (n and len(styles) != n):
        return None
    return styles


def _add_versions(clause: Clause, slots: Slots, styles: list[str], state: _State, ctx: _Context,
                  stage: Stage | None = None) -> None:
    """One branch per style: the input redrawn in it, or (no input) the picture described drawn in it; each
    branch is saved, and later steps apply to every one."""
    if stage is None:
        m = _VERSIONS_EN.search(clause.text)
        base = (m.group("base") if m and m.group("base") else clause.text[:m.start()] if m else
                clause.text[:_VERSIONS_ZH.search(clause.text).start()])
        stage = _build("generate", base, read_slots(base), ctx)
    for n, style in enumerate(styles):
        version = replace(stage, kind="restyle" if stage.kind != "generate" else "generate", style=style,
                          branch=n, count=None, direction=dict(stage.direction), extra=dict(stage.extra))
        base = (stage.prompt or "") if stage.kind == "generate" else ""
        version.prompt = f"{base}, {style}" if base else style
        state.stages.append(version)
    state.branches = len(styles)


_BRANCH_PICK = _rx(r"第([一二三123])张|\b(?:the )?(first|second|third|1st|2nd|3rd)(?: one| image| picture| photo)?\b")
_BRANCH_ALL = _rx(r"\bboth\b|\beach\b|\ball\b|都|分别|每张|两张")
_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2}


def _branch_targets(text: str, branches: int) -> list[int]:
    """Which branches a later step applies to: the one it names, else every one."""
    if branches == 1:
        return [0]
    if not _BRANCH_ALL.search(text) and (m := _BRANCH_PICK.search(text)):
        index = (cn_number(m.group(1)) - 1) if m.group(1) else _ORDINALS[m.group(2).lower()]
        if 0 <= index < branches:
            return [index]
    return list(range(branches))


# ---- reading ---------------------------------------------------------------------------------------------------
def _slot_options(text: str) -> dict[str, bool]:
    return {"scale": bool(re.search(r"upscal|enlarge|放大|超分|hi-?res|highres|高清|latent|\b\d(?:\.\d+)?x\b|"
                                    + _RESIZE.pattern, text, IC)),
            "video": bool(_VIDEO.search(text) or re.search(r"interpolat|补帧|插帧|smoother|fps|帧", text, IC))}


_CHATTER_REST = _rx(r"\b(?:please|pls|thanks|thank you|so|ok|okay|guys|all|here|and|but|i|a|an|the|from|out|of|"
                    r"with|in)\b|谢谢|一下|了|啊|呀|吧")


_CHATTER_LEAD = _rx(r"^(?:(?:" + _CHATTER.pattern + r")\s*[,,:::.。!!]\s*)+")


def _context_only(text: str) -> bool:
    """Chatter ("hey guys, newbie here", "我是新手,求助", "I've got a render out of Blender, render.png") or a
    description of the input's problem with no action ("it has a scratch on the bottle", "分辨率太低了")."""
    rest = _CHATTER.sub(" ", text)
    if rest != text and not re.search(r"[^\W\d_]", _CHATTER_REST.sub(" ", FILE.sub(" ", rest))):
        return True
    return _PROBLEM.search(text) is not None and not _ACTION.search(text)


def _context(clause: Clause, state: _State, ctx: _Context) -> None:
    """A context clause adds no step: a file it names is the input of the step next to it, its settings go to
    the neighbouring stage, its words are kept in that stage's text only (never its prompt)."""
    slots = read_slots(clause.text, **_slot_options(clause.text))
    last = state.stages[-1] if state.stages else None
    if slots.images:
        if last is not None and last.kind in _NEEDS_IMAGE and not last.image:
            last.image, last.text = slots.images[0], f"{last.text}; {clause.text}"
            return
        stage = _build("img2img", clause.text, slots, ctx)
        stage.prompt, stage.extra["input_only"] = None, True
        state.stages.append(stage)
        return
    if last is None:
        state.pending.append(slots)
        return
    last.text = f"{last.text}; {clause.text}"
    for stage in _last_branch_stages(state):
        _apply_slots(stage, slots)


def _read_clause(clause: Clause, state: _State, ctx: _Context) -> None:
    if _FILLER.match(clause.text):
        return
    if _context_only(clause.text):
        _context(clause, state, ctx)
        return
    if lead := _CHATTER_LEAD.match(clause.text):  # "hi all, quick question: turn photo.png into …"
        clause = Clause(clause.text[lead.end():], clause.after)
    slots = read_slots(clause.text, **_slot_options(clause.text))
    if state.stages and _BARE_PARAM.match(clean_prompt(slots.text)):
        _bare_value(clean_prompt(slots.text), slots, state)  # "重绘幅度", "strength": the stage before's
        return
    kind = _classify(clause.text, slots, state)
    if (kind == "generate" or kind is None and not state.stages) and (versions := _versions(clause.text)):
        _add_versions(clause, slots, versions, state, ctx)
        return
    if kind is None:
        _description(clause, slots, state, ctx)
        return
    if kind == "generate" and (split := _branches(clause.text)):
        _add_branches(clause, slots, split, state, ctx)
        return
    stage = _build(kind, clause.text, slots, ctx)
    if kind == "img2img" and _input_only(clause.text, slots):
        stage.extra["input_only"] = True
    if kind in ("img2img", "restyle", "edit") and (versions := _versions(clause.text)):
        _add_versions(clause, slots, versions, state, ctx, stage)
        return
    guide = _split_reference(stage, clause.text, slots) if kind == "controlnet" else None
    _take_input(stage, clause, slots, state, ctx)
    if kind in _NEEDS_IMAGE and not stage.image and state.stages and state.stages[-1].kind == "llm_write" \
            and not _DEICTIC.search(clause.text.replace("it ", "")):
        # "an LLM writes the prompt, then upscale": the upscale implies a picture drawn from that prompt
        state.stages.append(Stage(kind="generate", text=clause.text, extra={"prompt_from": "previous"}))
    if kind == "generate" and state.stages and state.stages[-1].kind == "llm_write":
        stage.extra["prompt_from"] = "previous"  # "写一段提示词,然后用它画": the LLM's text is the prompt
        stage.prompt = clean_prompt(_FROM_TEXT.sub(" ", _DEICTIC.sub(" ", clean_prompt(slots.text)))) or None
    if kind in _LEFTOVER_KINDS and not state.stages and not stage.image and not _DEICTIC.search(clause.text) \
            and (lead := _leftover(kind, slots)):
        state.stages.append(_build("generate", lead, read_slots(lead), ctx))
        stage.prompt = None
    if _fold(stage, state) or _resize_after(stage, state) or _same_step(stage, clause, state):
        return
    targets = _branch_targets(clause.text, state.branches) if state.stages else [0]
    for branch in targets:
        state.stages.append(replace(stage, branch=branch, direction=dict(stage.direction), extra=dict(stage.extra)))
        if guide is not None:
            state.stages.append(replace(guide, branch=branch, extra=dict(guide.extra)))


_REFERENCE_WORD = _rx(r"风格参考|参考图?|\bstyle reference\b|\breference\b|\bin the style of\b|\bstyle of\b|的风格|风格")


def _split_reference(stage: Stage, text: str, slots: Slots) -> Stage | None:
    """"depth.png as the depth map and style.jpg as the style reference": one clause, two guides. The file next to
    the reference words is the reference's image, the other the control image; the reference samples after the
    ControlNet (both guide one sampling), so neither is dropped."""
    files = [f for f in slots.images if not _MASK_FILE.search(f)]
    word = _REFERENCE_WORD.search(text)
    if len(files) < 2 or word is None or not _TRIGGERS["reference"].search(text):
        return None
    def distance(name: str) -> int:
        at = text.find(name)
        return abs(at - word.start()) if at >= 0 else len(text)
    reference = min(files, key=distance)
    control = next(f for f in files if f != reference)
    words = _TRIGGERS["reference"].sub(" ", slots.text)
    words = re.sub(r"^\s*(?:和|与|及|\band\b|,|,)\s*|\s*(?:和|与|及|\band\b)\s*(?=[,,]|$)", " ",
                   _TRIGGERS["controlnet"].sub(" ", words), flags=IC)
    prompt = _prompt("controlnet", replace(slots, text=words, style=None)) or None
    stage.image, stage.prompt, stage.style = control, prompt, None
    return Stage(kind="reference", text=text, image=reference, prompt=prompt, width=stage.width, height=stage.height,
                 negative=stage.negative, model_hint=stage.model_hint)


_FROM_TEXT = _rx(r"\b(?:from|using|with|based on|out of) (?:that|the|this|its|their) (?:text|description|prompt|answer|"
                 r"output|words)\b|(?:根据|按照?|用)(?:这段|那段|它的?|上面的?)?(?:文字|描述|文本|提示词)")
_INPUT_ONLY = _rx(r"\b(?:load|open|take|use|using|start (?:from|with)|here is|here's|this is|got|have|i have)\b|"
                 r"读取|加载|打开|导入|这是|这张|有一张|太小了?|太模糊了?|不够清晰|好像|有点")


def _input_only(text: str, slots: Slots) -> bool:
    """"Load scan.png", "sketch.png 太小了": a clause that only names a file (or comments on it) states the input of
    the step that follows, not a redraw."""
    if slots.denoise is not None or slots.style or _IMG2IMG.search(text):
        return False
    return len(re.findall(r"[^\W\d_]", _INPUT_ONLY.sub(" ", clean_prompt(slots.text)))) <= 4


def _take_input(stage: Stage, clause: Clause, slots: Slots, state: _State, ctx: _Context) -> None:
    """A step after a clause that only named its input takes that input ("Load scan.png, invert it"); a step after
    a clause that only named a mask gets the mask ("用 mask.png 作为遮罩,把 photo.png 里的天空重绘成晚霞")."""
    if not state.stages or stage.kind not in _NEEDS_IMAGE:
        return
    last = state.stages[-1]
    if last.extra.get("input_only") and not stage.image and last.branch == 0 and state.branches == 1:
        state.stages.pop()
        stage.image = last.image
    elif last.kind == "inpaint" and last.mask and not last.image and stage.kind in ("img2img", "restyle", "edit") \
            and stage.image:
        state.stages.pop()
        rebuilt = _build("inpaint", clause.text, read_slots(clause.text), ctx)
        stage.kind, stage.mask, stage.prompt = "inpaint", last.mask, rebuilt.prompt or stage.prompt


def _leftover(kind: StageKind, slots: Slots) -> str:
    """The description a post-processing clause also carries ("hires fix: a castle at dawn" → "a castle at dawn")."""
    text = _TRIGGERS.get(kind, _SAVE).sub(" ", slots.text)
    text = clean_prompt(_DEICTIC.sub(" ", text))
    text = re.sub(r"^(?:by|to|at|fix|it)\b", "", text, flags=IC).strip(EDGE)
    return text if len(re.findall(r"\w", text)) >= 3 else ""


def _fold(stage: Stage, state: _State) -> bool:
    """A control or reference image next to a generation is one stage: the generation, guided."""
    if not state.stages:
        return False
    last = state.stages[-1]
    if stage.kind in ("controlnet", "reference") and last.kind == "generate" and not stage.prompt:
        last.kind, last.control, last.image = stage.kind, stage.control, stage.image
        last.text = f"{last.text}; {stage.text}"
        return True
    if stage.kind == "generate" and last.kind in ("controlnet", "reference") and not last.prompt:
        last.prompt, last.text = stage.prompt, f"{last.text}; {stage.text}"
        if last.kind == "controlnet" and stage.denoise is not None and "strength" not in last.extra and \
                _CN_STRENGTH.search(stage.text):
            last.extra["strength"], stage.denoise = min(2.0, stage.denoise), None  # "…,强度0.8": the guide's
        _merge_values(last, stage)
        return True
    return False


def _resize_after(stage: Stage, state: _State) -> bool:
    """"Upscale with a model, then scale the result down to 2x the original": one upscale whose model output is
    resized to the stated factor (of the original), not a second resize of the 4x result."""
    if not stage.extra.get("resize") or stage.scale is None or not state.stages:
        return False
    last = state.stages[-1]
    if last.kind != "upscale" or last.scale is not None or last.extra.get("resize") or last.branch != stage.branch:
        return False
    last.scale, last.text = stage.scale, f"{last.text}; {stage.text}"
    return True


def _same_step(stage: Stage, clause: Clause, state: _State) -> bool:
    """"remove the background and make it transparent": a second clause that restates the same step; "做成动态照片,
    让人物眨眼微笑": a video's motion said next to it; "…, then make it a wider view": an outpaint restated."""
    if not state.stages or stage.image:
        return False
    last = state.stages[-1]
    if last.kind != stage.kind or stage.kind in ("generate", "unknown"):
        return False
    restated = stage.kind == "outpaint" and not _OUTPAINT_PIXELS.search(clause.text) and \
        not any(p.search(clause.text) for _, p in _OUTPAINT_SIDE) and not _aspect(clause.text)
    motion = stage.kind in ("i2v", "t2v") and clause.after == "soft"
    if not restated and not motion and (stage.prompt or (clause.after != "soft" and stage.kind != "hires")):
        return False
    last.text = f"{last.text}; {stage.text}"
    if motion and stage.prompt:
        last.prompt = f"{last.prompt}, {stage.prompt}" if last.prompt else stage.prompt
    _merge_values(last, stage)
    return True


def _merge_values(into: Stage, source: Stage) -> None:
    into.with_model = into.with_model or source.with_model
    for name in ("count", "width", "height", "style", "model_hint", "negative", "scale", "denoise"):
        if getattr(into, name) is None:
            setattr(into, name, getattr(source, name))


def _description(clause: Clause, slots: Slots, state: _State, ctx: _Context) -> None:
    """A clause with no action: settings or more words for its neighbour, a picture to draw when it comes
    first, and an "unknown" stage when it follows a sequence word with words nothing maps."""
    remainder = clean_prompt(slots.text)
    if state.stages and (_BARE_PARAM.match(remainder) or not re.search(r"[^\W\d_]", remainder)):
        _bare_value(remainder, slots, state)
        return
    if not re.search(r"\w", remainder):
        if state.stages:
            for stage in _last_branch_stages(state):
                _apply_slots(stage, slots)
        else:
            state.pending.append(slots)
        return
    if not state.stages:
        if split := _branches(clause.text):
            _add_branches(clause, slots, split, state, ctx)
        else:
            state.stages.append(_build("generate", clause.text, slots, ctx))
        return
    if state.wanted > state.branches and all(s.kind == "generate" for s in state.stages):
        _add_branch(clause.text, Slots(text=""), slots, state, ctx)  # "three images: a; b; c": the list goes on
        return
    last = state.stages[-1]
    if clause.after == "soft" and last.kind in _PROMPTED | {"edit", "replace"}:
        last.prompt = f"{last.prompt}, {remainder}" if last.prompt else remainder
        last.text = f"{last.text}, {clause.text}"
        _apply_slots(last, slots)
        return
    state.stages.append(Stage(kind="unknown", text=clause.text))


def _bare_value(remainder: str, slots: Slots, state: _State) -> None:
    """"strength", "骨架", "(0.35)": a parameter fragment of the stage before, never a step of its own; a bare
    0–1 number after an img2img is its denoise."""
    for stage in _last_branch_stages(state):
        _apply_slots(stage, slots)
        if stage.kind in ("img2img", "restyle", "edit") and stage.denoise is None and \
                (m := re.fullmatch(r"[((]?\s*(0?\.\d+)\s*[))]?", remainder)):
            stage.denoise = float(m.group(1))


def _last_branch_stages(state: _State) -> list[Stage]:
    """The last stage of each branch: where a trailing setting ("4张", "no text") applies."""
    last: dict[int, Stage] = {}
    for stage in state.stages:
        last[stage.branch] = stage
    return list(last.values())


def _add_branches(clause: Clause, slots: Slots, split: _Split, state: _State, ctx: _Context) -> None:
    shared = read_slots(split.lead)
    for part in split.parts:
        _add_branch(part, shared, slots, state, ctx)
    state.wanted = split.wanted


def _add_branch(part: str, shared: Slots, whole: Slots, state: _State, ctx: _Context) -> None:
    """One listed picture as its own generate stage; the lead-in's style and negatives and the clause's size and
    model family apply to every picture, the picture's own words only to it."""
    stage = _build("generate", part, read_slots(part), ctx)
    stage.branch = len(state.stages)  # only generate stages come before, one per listed picture
    _apply_slots(stage, Slots(text="", model_hint=shared.model_hint or whole.model_hint, negatives=shared.negatives,
                              style=shared.style, width=whole.width, height=whole.height))
    state.stages.append(stage)
    state.branches = stage.branch + 1


def read_request(text: str, *, checkpoints: list[str], loras: list[str], inputs: list[str],
                 answers: dict[str, str] | None = None, upscale_models: list[str] | None = None) -> ParsedRequest:
    """The stages a request asks for, in order, with their slots; the settings that apply to all of them."""
    answers = answers or {}
    facts = extract(text, checkpoints=checkpoints, loras=loras, inputs=inputs)
    ctx = _Context(checkpoints, loras, upscale_models or [])
    state = _State()
    clauses = split_clauses(text)
    for clause in clauses[:MAX_STAGES]:
        _read_clause(clause, state, ctx)
        if state.pending and state.stages:
            for slots in state.pending:
                _apply_slots(state.stages[0], slots)
            state.pending.clear()
    if len(clauses) > MAX_STAGES:
        rest = " ".join(c.text for c in clauses[MAX_STAGES:])
        state.stages.append(Stage(kind="unknown", text=rest, extra={"reason": f"more than {MAX_STAGES} steps"}))
    if not state.stages and state.pending:
        stage = Stage(kind="generate", text=text)
        for slots in state.pending:
            _apply_slots(stage, slots)
        state.stages.append(stage)
    parsed = ParsedRequest(text=text, lang="zh" if has_cjk(text) else "en", stages=state.stages,
                           steps=facts.steps, cfg=facts.cfg, seeds=facts.seeds or _fixed_seed(text), sampler=facts.sampler,
                           scheduler=facts.scheduler, checkpoint=answers.get("checkpoint") or facts.checkpoint,
                           lora=facts.lora, lora_strength=facts.lora_strength, llm_model=facts.llm_model)
    _answers(parsed, answers)
    _lora_wanted(parsed, text)
    _notes(parsed)
    for stage in parsed.stages:  # a template's values may be stated anywhere in the request
        if stage.kind == "text_template" and stage.extra.get("template"):
            stage.extra["values"] = template_values(text, stage.extra["template"])
    return parsed


_FIXED_SEED = _rx(r"(?:seed|种子) ?(?:固定(?:为|成|在|是)?|fixed (?:at|to)|is|of|为|是) ?[::=]? ?(\d{1,20})(?!\d)|"
                  r"固定(?:的)?(?:种子|seed) ?(?:为|是)? ?[::=]? ?(\d{1,20})(?!\d)")


def _fixed_seed(text: str) -> list[int]:
    """"seed固定为42", "种子固定42", "the seed is 7": a seed stated with words between (the extractor reads "seed 42")."""
    m = _FIXED_SEED.search(text)
    return [int(m.group(1) or m.group(2))] if m else []


def _answers(parsed: ParsedRequest, answers: dict[str, str]) -> None:
    """An image the user gave in answer goes to the first stage that reads an image and names none."""
    for slot, kinds in (("image", _NEEDS_IMAGE), ("video", {"v2v", "interpolate"})):
        if value := answers.get(slot):
            first = next((s for s in parsed.stages if s.kind in kinds), None)
            if first is not None and getattr(first, slot) is None and first is _first_input_stage(parsed):
                setattr(first, slot, value)


def _first_input_stage(parsed: ParsedRequest) -> Stage | None:
    return parsed.stages[0] if parsed.stages else None


_LORA_ASKED = _rx(r"(?:with|using|use|add|apply) (?:the |a |my )?(?<![\w\-.])([\w\-.]{1,60}) ?lora\b|\blora[:: ]+([\w\-.]{1,60})|"
                  r"(?<![\w\-.])([\w\-.]{1,30}?) ?lora")


def _lora_wanted(parsed: ParsedRequest, text: str) -> None:
    """A LoRA asked for that is not installed: kept as `lora_wanted`, so the planner asks instead of dropping it."""
    if parsed.lora or "lora" not in text.lower():
        return
    m = _LORA_ASKED.search(text)
    name = next((g for g in m.groups() if g), "") if m else ""
    name = re.sub(r"^(?:加上|使用|用|加|the|a|my)", "", name.strip()).strip(" -_")
    parsed.lora_wanted = name if name and name.lower() not in ("a", "the", "my", "with") else "lora"


_CHINESE_READY = {"qwen", "qwen-edit", "hunyuan", "kolors", "wan", "wanx", "cogview"}
_CLIP_KINDS = {"generate", "img2img", "restyle", "inpaint", "replace", "controlnet", "reference"}


_CHINESE_READY_NAMES = _rx(r"qwen|hunyuan|kolors|cogview|wan2|wan_")


def _notes(parsed: ParsedRequest) -> None:
    """CLIP text encoders (SD 1.5, SDXL …) were trained on English captions: say so for a Chinese prompt, unless
    the model named reads Chinese (Qwen-Image, Hunyuan, Kolors, Wan)."""
    if parsed.checkpoint and _CHINESE_READY_NAMES.search(parsed.checkpoint):
        return
    for stage in parsed.stages:
        if stage.kind in _CLIP_KINDS and stage.prompt and has_cjk(stage.prompt) and \
                (family_of(stage.model_hint or "") or stage.model_hint or "") not in _CHINESE_READY:
            parsed.notes.append("CLIP-based models (SD 1.5, SDXL, SD3, Flux) read English prompts best; this prompt "
                                "is Chinese, so an English prompt (or an LLM translating it) will follow it better.")
            return
