class Echo:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"
    CATEGORY = "test"

    def run(self, text):
        return (text,)


class NotANode:
    pass


NODE_CLASS_MAPPINGS = {"Echo": Echo, "NotANode": NotANode}
