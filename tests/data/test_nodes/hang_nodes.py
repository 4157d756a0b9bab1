"""A third-party-style pack of badly behaved nodes: they never return and never check for interrupts.

None declares THREAD_SAFE, so NodeWeaver runs them under the lock shared by third-party nodes, as it
would a real legacy pack. Tests set RELEASE when they are done so that no thread outlives them.
"""

import threading
import time

RELEASE = threading.Event()
LOOPING = {"count": 0}  # HangLoop calls still inside their loop


class HangForever:
    """Blocks in C (an Event wait) until the test releases it: cannot be stopped from Python."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "hang"
    CATEGORY = "test/hang"

    def hang(self, value):
        RELEASE.wait()
        return (value,)


class HangLoop:
    """Loops in Python without ever calling check_interrupted()."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "loop"
    CATEGORY = "test/hang"

    def loop(self, value):
        LOOPING["count"] += 1
        try:
            while not RELEASE.is_set():
                time.sleep(0.01)
        finally:
            LOOPING["count"] -= 1
        return (value,)


class HangWithTimeout(HangForever):
    """Declares its own time limit, as ComfyUI-style packs may."""

    TIMEOUT = 0.3


class LegacyEcho:
    """A quick third-party node that needs the same shared lock as the hanging ones."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "echo"
    CATEGORY = "test/hang"

    def echo(self, value):
        return (value,)


NODE_CLASS_MAPPINGS = {"HangForever": HangForever, "HangLoop": HangLoop, "HangWithTimeout": HangWithTimeout,
                       "LegacyEcho": LegacyEcho}
