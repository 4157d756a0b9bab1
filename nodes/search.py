"""Word search over node specs for the agent and the CLI, in English and Chinese.

Node names and descriptions are English; Chinese queries are mapped onto English terms with a small
glossary of the words people use for workflow steps (图片 → image, 放大 → upscale ...).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

from pydantic import BaseModel
from rapidfuzz import fuzz, process

from nodes.spec import NodeSpec

# Chinese workflow vocabulary → English search terms. Longest match wins when scanning a query.
ZH_GLOSSARY: dict[str, str] = {
    "图片": "image", "图像": "image", "照片": "image photo", "画": "image draw", "生成": "generate sample",
    "海报": "image poster", "文生图": "text image sample", "图生图": "image encode vae",
    "加载": "load", "读取": "load read", "载入": "load", "保存": "save", "存储": "save", "导出": "save",
    "预览": "preview", "显示": "preview show", "查看": "preview",
    "文本": "text string", "文字": "text string", "字符串": "string", "提示词": "prompt text encode clip",
    "正向": "positive", "反向": "negative", "负面": "negative",
    "拼接": "concatenate", "连接": "concatenate", "合并": "concatenate", "替换": "replace",
    "正则": "regex", "匹配": "match", "提取": "extract", "模板": "template",
    "模型": "model checkpoint", "大模型": "checkpoint", "检查点": "checkpoint", "底模": "checkpoint",
    "采样": "sampler sample ksampler", "采样器": "sampler ksampler", "调度器": "scheduler", "种子": "seed",
    "步数": "steps", "放大": "upscale scale", "缩放": "scale", "潜空间": "latent", "潜在": "latent",
    "反相": "invert", "反转": "invert", "颜色": "color", "遮罩": "mask", "蒙版": "mask",
    "解码": "decode", "编码": "encode", "整数": "int integer", "浮点": "float", "布尔": "boolean",
    "数字": "int float number", "开关": "switch", "切换": "switch", "条件": "switch conditioning",
    "大语言模型": "llm chat", "语言模型": "llm chat", "对话": "chat llm", "聊天": "chat llm",
    "通义千问": "llm qwen dashscope", "千问": "llm qwen dashscope", "万相": "wanx dashscope image",
    "通义万相": "wanx dashscope image", "翻译": "llm chat", "总结": "llm chat", "摘要": "llm chat",
    "批量": "batch", "宽": "width", "高": "height", "尺寸": "width height size",
}
_ZH_TERMS = sorted(ZH_GLOSSARY, key=len, reverse=True)
_CJK = re.compile(r"[\u3400-\u9fff]")
_WORD = re.compile(r"[A-Za-z]+|[0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

STOPWORDS = frozenset(["a", "an", "the", "this", "that", "these", "those", "of", "to", "in", "on", "at", "by", "for", "from", "with", "into", "onto", "and", "or", "then", "than", "as", "is", "are", "be", "it", "its", "my", "me", "i", "you", "your", "we", "our", "please", "use", "using", "make", "do", "node", "nodes", "some", "any", "like", "also", "so", "but", "not", "no", "via", "per"])

MAX_SUGGEST_LENGTH = 200
FIELD_WEIGHTS = {"name": 3.0, "display": 2.5, "category": 1.5, "types": 1.2, "inputs": 0.6, "description": 1.0}


class SearchHit(BaseModel):
    name: str
    display_name: str
    category: str
    description: str
    inputs: list[str]
    outputs: list[str]
    score: float
    executable: bool


def _stem(word: str) -> str:
    word = word.lower()
    if len(word) > 4 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """English tokens: CamelCase and snake_case split, lowercased, lightly stemmed."""
    out: list[str] = []
    for chunk in re.split(r"[^0-9A-Za-z]+", text):
        if not chunk:
            continue
        parts = _CAMEL.findall(chunk) or [chunk]
        out.extend(_stem(p) for p in parts)
        if len(parts) > 1:
            out.append(chunk.lower())
    return out


def query_tokens(query: str) -> list[str]:
    """Tokens of a query in English, Chinese or both; Chinese runs go through the glossary."""
    words: list[str] = []
    i = 0
    while i < len(query):
        if _CJK.match(query[i]):
            for term in _ZH_TERMS:
                if query.startswith(term, i):
                    words.extend(tokens(ZH_GLOSSARY[term]))
                    i += len(term)
                    break
            else:
                i += 1
        else:
            j = i
            while j < len(query) and not _CJK.match(query[j]):
                j += 1
            kept = [w for w in re.split(r"[^0-9A-Za-z_]+", query[i:j]) if w and w.lower() not in STOPWORDS]
            words.extend(tokens(" ".join(kept)))
            i = j
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return list(seen)


class NodeSearchIndex:
    """An inverted index of weighted tokens per node, with idf so rare words count more."""

    def __init__(self, specs: dict[str, NodeSpec]) -> None:
        self.specs = specs
        self.postings: dict[str, dict[str, float]] = defaultdict(dict)
        for name, spec in specs.items():
            fields = {
                "name": name,
                "display": spec.display_name,
                "category": spec.category,
                "types": " ".join([i.type for i in spec.inputs if i.section != "hidden"] +
                                  [o.type for o in spec.outputs]),
                "inputs": " ".join(i.name for i in spec.inputs if i.section != "hidden"),
                "description": spec.description,
            }
            for field, text in fields.items():
                weight = FIELD_WEIGHTS[field]
                for tok in tokens(text):
                    if self.postings[tok].get(name, 0.0) < weight:
                        self.postings[tok][name] = weight
        self.vocabulary = sorted(self.postings)
        self.n = max(len(specs), 1)
        self._by_lower = {n.lower(): n for n in specs}
        self._lower_names = list(self._by_lower)

    def _idf(self, tok: str) -> float:
        return math.log(1 + self.n / (1 + len(self.postings.get(tok, ()))))

    def search(self, query: str, *, produces: str | None = None, consumes: str | None = None,
               category: str | None = None, limit: int = 10) -> list[SearchHit]:
        candidates = set(self.specs)
        if produces:
            candidates = {n for n in candidates if any(_type_matches(produces, o.type) for o in self.specs[n].outputs)}
        if consumes:
            candidates = {n for n in candidates
                          if any(i.section != "hidden" and _type_matches(consumes, i.type) for i in self.specs[n].inputs)}
        if category:
            prefix = category.lower()
            candidates = {n for n in candidates if self.specs[n].category.lower().startswith(prefix)}
        scores: dict[str, float] = defaultdict(float)
        q_tokens = query_tokens(query or "")
        for tok in q_tokens:
            matched: dict[str, float] = dict(self.postings.get(tok, {}))
            if len(tok) >= 3:
                for word in self._prefixed(tok):
                    for name, weight in self.postings[word].items():
                        matched[name] = max(matched.get(name, 0.0), weight * 0.5)
            idf = self._idf(tok)
            for name, weight in matched.items():
                if name in candidates:
                    scores[name] += weight * idf
        lowered = (query or "").strip().lower()
        for name in candidates:
            if lowered and (name.lower() == lowered or self.specs[name].display_name.lower() == lowered):
                scores[name] += 100.0
        if not q_tokens and not lowered:
            ranked = sorted(candidates)
            hits = [(n, 0.0) for n in ranked]
        else:
            hits = sorted(((n, s) for n, s in scores.items() if s > 0),
                          key=lambda item: (-item[1], self.specs[item[0]].deprecated, item[0]))
        return [self._hit(name, score) for name, score in hits[:max(limit, 0)]]

    def _prefixed(self, tok: str) -> list[str]:
        import bisect

        start = bisect.bisect_left(self.vocabulary, tok)
        out = []
        for word in self.vocabulary[start:start + 50]:
            if not word.startswith(tok):
                break
            if word != tok:
                out.append(word)
        return out

    def close_names(self, name: str, limit: int = 3) -> list[str]:
        """Known names like a misspelt one, best first: the same name in other case, else those whose
        similarity (difflib's ratio, computed by rapidfuzz) is at least 0.6."""
        if len(name) > MAX_SUGGEST_LENGTH:  # no class name is this long; do not compare megabytes
            return []
        lowered = name.lower()
        same = self._by_lower.get(lowered)
        if same is not None and same != name:
            return [same]
        found = process.extract(lowered, self._lower_names, scorer=fuzz.ratio, limit=limit, score_cutoff=60)
        return [self._by_lower[match] for match, _score, _index in found]

    def _hit(self, name: str, score: float) -> SearchHit:
        spec = self.specs[name]
        return SearchHit(
            name=name, display_name=spec.display_name, category=spec.category,
            description=spec.description[:200], score=round(score, 3), executable=spec.executable,
            inputs=[f"{i.name}:{i.type}" for i in spec.inputs if i.section != "hidden"],
            outputs=[f"{o.name}:{o.type}" for o in spec.outputs],
        )


def _type_matches(wanted: str, declared: str) -> bool:
    wanted = wanted.strip().upper()
    declared_types = {t.strip().upper() for t in declared.split(",")}
    return wanted in declared_types or "*" in declared_types
