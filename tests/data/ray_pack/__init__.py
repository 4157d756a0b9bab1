"""Sleep-bound nodes for the Ray backend's tests and benchmark: they cost wall time, not CPU, so the
throughput of N workers measures the backend's scheduling and overhead, not the machine's cores.

RaySave writes a small text file into the output folder (ComfyUI's prefix_00001_ naming) and reports the
process that ran it, so a test can tell which worker ran a job and that its file came back.
"""

import os
import re
import time

from runtime import folders
from runtime.progress import check_interrupted, report_progress

_STEP_S = 0.01


class RaySleep:
    """Sleeps `seconds` in small steps, checking for an interrupt and reporting progress; passes `value` on."""

    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seconds": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 600.0}),
                             "value": ("STRING", {"default": ""})},
                "optional": {"model": ("RAY_MODEL",)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "sleep"
    CATEGORY = "test/ray"

    def sleep(self, seconds, value, model=None):
        end = time.monotonic() + seconds
        steps = 0
        while (left := end - time.monotonic()) > 0:
            check_interrupted()
            time.sleep(min(_STEP_S, left))
            steps += 1
            if steps % 10 == 0:
                report_progress(min(seconds, seconds - left), seconds)
        return (f"{value}" if model is None else f"{value} with {model}",)


class RayLoadModel:
    """Stands for a checkpoint loader: its `ckpt_name` is what the backend's model affinity keys on."""

    THREAD_SAFE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": ("STRING", {"default": "model.safetensors"})}}

    RETURN_TYPES = ("RAY_MODEL",)
    FUNCTION = "load"
    CATEGORY = "test/ray"

    def load(self, ckpt_name):
        return (f"model<{ckpt_name}>",)


class RaySave:
    """An output node: writes `text` to a file in the output folder; the ui names the file and this process."""

    THREAD_SAFE = True
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"forceInput": True}),
                             "filename_prefix": ("STRING", {"default": "ray"})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    CATEGORY = "test/ray"

    def save(self, text, filename_prefix):
        folder = folders.output_dir()
        folder.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(filename_prefix) + r"_(\d{5})_\.txt$")
        taken = [int(m.group(1)) for name in os.listdir(folder) if (m := pattern.match(name))]
        name = f"{filename_prefix}_{max(taken, default=0) + 1:05d}_.txt"
        (folder / name).write_text(text, encoding="utf-8")
        return {"ui": {"texts": [{"filename": name, "subfolder": "", "type": "output"}],
                       "text": [text], "pid": [os.getpid()]}}


NODE_CLASS_MAPPINGS = {"RaySleep": RaySleep, "RayLoadModel": RayLoadModel, "RaySave": RaySave}
