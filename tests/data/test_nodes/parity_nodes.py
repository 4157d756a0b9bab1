"""Nodes for the ComfyUI-parity engine tests: blockers, expansion (nested, with outputs), UNIQUE_ID, async."""

import asyncio
import time

from runtime.comfy_graph import ExecutionBlocker, GraphBuilder

CALLS = {"PKeyed": 0, "PPlain": 0}
SPANS = []  # (start, end) of PAsyncSleep runs

_INT = ("INT", {"default": 0, "min": -10**9, "max": 10**9})


class PBlock:
    """Passes its value through, or blocks it (with a message when one is given)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": _INT, "block": ("BOOLEAN", {"default": False})},
                "optional": {"message": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value, block, message=""):
        return (ExecutionBlocker(message or None),) if block else (value,)


class PMakeList:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value1": _INT}, "optional": {"value2": _INT, "value3": _INT}}

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value1, value2=None, value3=None):
        return ([v for v in (value1, value2, value3) if v is not None],)


class PEquals:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": _INT, "b": _INT}}

    RETURN_TYPES = ("BOOLEAN",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a, b):
        return (a == b,)


class PCollect:
    """An output node showing every value it is given."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": _INT}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        return {"ui": {"values": [value]}}


class PKeyed:
    """Sees its own id: two identical ones must both run."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": _INT}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value, unique_id):
        CALLS["PKeyed"] += 1
        return (value,)


class PPlain:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": _INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        CALLS["PPlain"] += 1
        return (value,)


class PAsyncSleep:
    """An async third-party node (no THREAD_SAFE): several of them must overlap."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": _INT, "seconds": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 10.0})},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    async def run(self, value, seconds, unique_id):
        start = time.monotonic()
        await asyncio.sleep(seconds)
        SPANS.append((start, time.monotonic()))
        return (value,)


class PExpandAdd:
    """Expands into PAdd nodes that add `a`, `b` and 1 (a two-node subgraph), its result a link into it."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": _INT, "b": _INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a, b):
        g = GraphBuilder()
        first = g.node("PAdd", a=a, b=b)
        second = g.node("PAdd", a=first.out(0), b=1)
        return {"result": (second.out(0),), "expand": g.finalize()}


class PExpandNested:
    """Expands into a PExpandAdd (so into an expansion inside an expansion) and a PCollect output node."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": _INT}}

    RETURN_TYPES = ("INT", "INT")
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a):
        g = GraphBuilder()
        inner = g.node("PExpandAdd", a=a, b=10)
        g.node("PCollect", value=inner.out(0))
        return {"result": (inner.out(0), a), "expand": g.finalize()}


class PExpandDuplicate:
    """A broken expansion: a fixed node id, added twice by two calls."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": _INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a):
        return {"result": (["fixed", 0],), "expand": {"fixed": {"class_type": "PAdd", "inputs": {"a": a, "b": 0}}}}


class PAdd:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": _INT, "b": _INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, a, b):
        return (a + b,)


class PCountdown:
    """Counts n down by expanding into a PCountdown of n - 1 plus a PAdd: n levels of nested expansion."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"n": _INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, n):
        if n <= 0:
            return (0,)
        g = GraphBuilder()
        inner = g.node("PCountdown", n=n - 1)
        plus = g.node("PAdd", a=inner.out(0), b=1)
        return {"result": (plus.out(0),), "expand": g.finalize()}


class PRawSource:
    """Reports which node feeds it (a rawLink input) and that node's class (through DYNPROMPT); its hidden
    typed socket `extra` is an input only when the prompt fills it."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("INT", {"rawLink": True})},
                "hidden": {"dynprompt": "DYNPROMPT", "extra": ("INT",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, source, dynprompt, **kwargs):
        return (f"{source[0]}:{source[1]}:{dynprompt.get_node(source[0])['class_type']}:{kwargs.get('extra', 'none')}",)


class PShowText:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True})}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, text):
        return {"ui": {"text": [text]}}


class PLazyPick:
    """Picks `a` or `b` (both lazy) per `choose`; asked per item when `choose` is a list."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"choose": _INT, "a": ("INT", {"lazy": True}), "b": ("INT", {"lazy": True})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def check_lazy_status(self, choose, a=None, b=None):
        return ["a"] if choose == 0 else ["b"]

    def run(self, choose, a=None, b=None):
        return (a if choose == 0 else b,)


class PChanged:
    """IS_CHANGED sees constants only: its linked input arrives as None."""

    SEEN = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": _INT, "k": _INT}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def IS_CHANGED(cls, value, k):
        cls.SEEN.append(value)
        return k

    def run(self, value, k):
        return (value * k,)


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    PBlock, PMakeList, PEquals, PCollect, PKeyed, PPlain, PAsyncSleep, PExpandAdd, PExpandNested, PExpandDuplicate,
    PAdd, PCountdown, PRawSource, PShowText,
    PLazyPick, PChanged)}
