"""A small ComfyUI V3 pack (comfy_entrypoint + io.ComfyNode) for tests/test_parity_v3.py."""

from comfy_api.latest import ComfyExtension, io, ui

CALLS: list[str] = []  # which node ran, in order: the tests read it to see what was (not) evaluated


class V3Pick(io.ComfyNode):
    """Returns `on_true` or `on_false`; only the chosen one is evaluated (lazy + check_lazy_status)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="V3Pick", display_name="V3 Pick", category="testing/v3",
            inputs=[io.Boolean.Input("choose_true", default=True),
                    io.Int.Input("on_true", lazy=True, min=0, max=100, tooltip="used when true"),
                    io.Int.Input("on_false", lazy=True, min=0, max=100)],
            outputs=[io.Int.Output(display_name="picked")],
            hidden=[io.Hidden.unique_id])

    @classmethod
    def check_lazy_status(cls, choose_true, on_true=None, on_false=None):
        return ["on_true" if choose_true else "on_false"]

    @classmethod
    def execute(cls, choose_true, on_true=None, on_false=None) -> io.NodeOutput:
        CALLS.append(f"V3Pick:{cls.hidden.unique_id}")
        return io.NodeOutput(on_true if choose_true else on_false)


class V3Number(io.ComfyNode):
    """A number source whose fingerprint is its value, refusing negative numbers in validate_inputs."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="V3Number", category="testing/v3",
                         inputs=[io.Int.Input("value", default=1, min=-1000, max=1000),
                                 io.Combo.Input("mode", options=["plain", "double"], default="plain")],
                         outputs=[io.Int.Output(display_name="number")])

    @classmethod
    def validate_inputs(cls, value):
        return True if value >= 0 else f"value must not be negative, got {value}"

    @classmethod
    def fingerprint_inputs(cls, value, mode):
        return (value, mode)

    @classmethod
    def execute(cls, value, mode) -> io.NodeOutput:
        CALLS.append(f"V3Number:{value}")
        return io.NodeOutput(value * 2 if mode == "double" else value)


class V3Show(io.ComfyNode):
    """An output node showing its input as text."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(node_id="V3Show", category="testing/v3", is_output_node=True,
                         inputs=[io.Int.Input("value", force_input=True)], outputs=[])

    @classmethod
    async def execute(cls, value) -> io.NodeOutput:
        return io.NodeOutput(ui=ui.PreviewText(f"{value} (prompt has {len(cls.hidden.prompt)} nodes)"))


class V3Extension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [V3Pick, V3Number, V3Show]


async def comfy_entrypoint() -> V3Extension:
    return V3Extension()
