import folder_paths


class AnyType(str):
    """The usual custom-pack trick: a type that equals every other type."""

    def __ne__(self, other):
        return False


any_type = AnyType("*")


class ShoutText:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}), "times": ("INT", {"default": 1, "min": 1, "max": 5})},
                "optional": {"anything": (any_type, {})},
                "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("shouted",)
    FUNCTION = "shout"
    CATEGORY = "example/text"
    DESCRIPTION = "Upper-cases text and repeats it."

    def shout(self, text, times, anything=None, unique_id=None):
        return ((text.upper() + "!") * times,)


class ListCheckpoints:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": (folder_paths.get_filename_list("checkpoints"),)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "example/loaders"

    def run(self, ckpt_name):
        return (ckpt_name,)


NODE_CLASS_MAPPINGS = {"ShoutText": ShoutText, "ListCheckpoints": ListCheckpoints}
NODE_DISPLAY_NAME_MAPPINGS = {"ShoutText": "Shout Text"}
