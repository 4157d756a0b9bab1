"""Nodes the engine tests use: trivial arithmetic, waits, failures, lists, async and progress."""

import asyncio
import time

CALLS = {"count": 0}
SPANS = []  # (start, end) of SlowLegacy runs


class IntAdd:
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0, "min": -10**9, "max": 10**9}),
                             "b": ("INT", {"default": 0, "min": -10**9, "max": 10**9})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "add"
    CATEGORY = "test"

    def add(self, a, b):
        CALLS["count"] += 1
        return (a + b,)


class Wait:
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 60.0}),
                             "value": ("INT", {"default": 0, "min": -10**9, "max": 10**9})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "wait"
    CATEGORY = "test"

    def wait(self, seconds, value):
        time.sleep(seconds)
        return (value,)


class SlowLegacy:
    """A third-party node that does not declare THREAD_SAFE: NodeWeaver runs such nodes one at a time."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 0.3}), "value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, seconds, value):
        start = time.perf_counter()
        time.sleep(seconds)
        SPANS.append((start, time.perf_counter()))
        return (value,)


class Fail:
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0}), "message": ("STRING", {"default": "boom"})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "fail"
    CATEGORY = "test"

    def fail(self, value, message):
        raise ValueError(message)


class ShowInt:
    THREAD_SAFE = True
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ()
    FUNCTION = "show"
    CATEGORY = "test"

    def show(self, value):
        return {"ui": {"value": [value]}}


class Range:
    """OUTPUT_IS_LIST: one output that is a list of ints."""
    THREAD_SAFE = True
    OUTPUT_IS_LIST = (True,)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"n": ("INT", {"default": 3, "min": 0, "max": 100})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, n):
        return (list(range(n)),)


class SumList:
    """INPUT_IS_LIST: receives whole lists."""
    THREAD_SAFE = True
    INPUT_IS_LIST = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {"forceInput": True})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, values):
        return (sum(values),)


class AsyncDouble:
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    async def run(self, value):
        await asyncio.sleep(0.01)
        return (value * 2,)


class Steps:
    """Reports progress and honours interrupts between steps."""
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 5, "min": 1, "max": 1000}),
                             "delay": ("FLOAT", {"default": 0.0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, steps, delay):
        from runtime.progress import ProgressBar, check_interrupted

        bar = ProgressBar(steps)
        for _ in range(steps):
            check_interrupted()
            time.sleep(delay)
            bar.update(1)
        return (steps,)


class Volatile:
    """IS_CHANGED returns NaN: it runs every time."""
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 1})}}

    @classmethod
    def IS_CHANGED(cls, value):
        return float("nan")

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, value):
        return (value,)


NODE_CLASS_MAPPINGS = {c.__name__: c for c in (IntAdd, Wait, SlowLegacy, Fail, ShowInt, Range, SumList,
                                                  AsyncDouble, Steps, Volatile)}
