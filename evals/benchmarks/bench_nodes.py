"""Trivial nodes for engine benchmarks: the work is nothing, so the time measured is the engine's."""


class BenchIntAdd:
    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 0, "min": -(2 ** 62), "max": 2 ** 62}),
                             "b": ("INT", {"default": 0, "min": -(2 ** 62), "max": 2 ** 62})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "add"
    CATEGORY = "benchmark"

    def add(self, a, b):
        return (a + b,)


class BenchSink:
    THREAD_SAFE = True
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -(2 ** 62), "max": 2 ** 62})}}

    RETURN_TYPES = ()
    FUNCTION = "sink"
    CATEGORY = "benchmark"

    def sink(self, value):
        return {"ui": {"value": [value]}}


NODE_CLASS_MAPPINGS = {"BenchIntAdd": BenchIntAdd, "BenchSink": BenchSink}
