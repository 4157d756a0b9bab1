"""The tool-using planner (issue 14, part 1): scripted tool-calling chat models plan on ComfyUI's 496-node
catalog through search → get_node → draft → validation errors → repair → valid, every tool call in the trace;
budgets end a runaway loop; the OpenAI-compatible path makes real tool calls over HTTP; cassettes record and
replay tool calls exactly; the tools themselves answer bad input with structured errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes.provider_server import KEY, FakeProviders
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image

from agent import plan
from agent.graph import PlannerGraph
from agent.tools import PlannerTools
from compiler import parse_text, validate
from evals.cassette import Cassette, CassetteMissError, RecordingChatModel, ReplayChatModel

TOOL_NAMES = ["search_nodes", "get_node", "search_templates", "get_template", "list_models", "list_inputs",
              "validate"]


class ToolScript(GenericFakeChatModel):
    """A scripted chat model that accepts bind_tools. A step is an AIMessage or a function of the messages
    received (so a draft can use what the tools answered); every conversation it was sent is kept."""

    steps: list[Any] = []
    seen: list[list[Any]] = []
    bound: list[str] = []

    def bind_tools(self, tools, **kwargs):
        self.bound = [t.name for t in tools]
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.seen.append(list(messages))
        step = self.steps[min(len(self.seen), len(self.steps)) - 1]
        message = step(messages) if callable(step) else step
        return ChatResult(generations=[ChatGeneration(message=message)])


def calls(*pairs: tuple[str, dict], turn: int = 0) -> AIMessage:
    """An answer made of tool calls, with stable ids (what a provider gives)."""
    return AIMessage("", tool_calls=[{"name": n, "args": a, "id": f"t{turn}_{i}", "type": "tool_call"}
                                     for i, (n, a) in enumerate(pairs)],
                     usage_metadata={"input_tokens": 900, "output_tokens": 30, "total_tokens": 930})


def answer(text: str) -> AIMessage:
    return AIMessage(f"```python\n{text}```\nThe workflow.",
                     usage_metadata={"input_tokens": 1500, "output_tokens": 400, "total_tokens": 1900})


def tool_result(messages, name: str) -> dict:
    """The last result the model was given for a tool."""
    found = [m for m in messages if isinstance(m, ToolMessage) and m.name == name]
    assert found, f"no {name} result in the conversation"
    return json.loads(found[-1].content)


def tool_calls_in(trace: list[dict]) -> list[str]:
    return [t["tool"] for t in trace if t["step"] == "tool_call"]


def _png(path: Path) -> None:
    Image.new("RGB", (64, 48), (200, 120, 40)).save(path)


def _models(root: Path, files: dict[str, list[str]]) -> None:
    for kind, names in files.items():
        (root / "models" / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / "models" / kind / name).write_bytes(b"placeholder")


# ---- (a) ControlNet on the ComfyUI catalog ---------------------------------------------------------------------
CANNY = "control_v11p_sd15_canny.safetensors"
CONTROLNET_DRAFT = '''ckpt = CheckpointLoaderSimple(ckpt_name="sd15.safetensors")
pos = CLIPTextEncode(text="a modern glass house at the edge of a pine forest, golden hour light, architectural photography, highly detailed", clip=ckpt.CLIP)
neg = CLIPTextEncode(text="blurry, low quality, deformed, watermark, text", clip=ckpt.CLIP)
img = LoadImage(image="house.png")
edges = Canny(image=img.IMAGE, low_threshold=0.4, high_threshold=0.8)
cn = ControlNetLoader(control_net_name="{controlnet}")
apply = ControlNetApplyAdvanced(positive=pos.CONDITIONING, negative=neg.CONDITIONING, control_net=cn.CONTROL_NET, image=edges.IMAGE, strength={strength}, start_percent=0.0, end_percent=1.0)
lat = EmptyLatentImage(width=512, height=512, batch_size=1)
s = KSampler(model=ckpt.MODEL, seed=7, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", positive=apply.positive, negative=apply.negative, latent_image=lat.LATENT, denoise=1.0)
dec = VAEDecode(samples=s.LATENT, vae=ckpt.VAE)
out = SaveImage(images=dec.IMAGE, filename_prefix="house")
'''


def controlnet_script() -> list[Any]:
    """Looks the nodes and files up, drafts with two mistakes, reads the errors, checks the fix, answers."""

    def broken_draft(messages):
        installed = tool_result(messages, "list_models")["files"]
        assert installed == [CANNY]
        return answer(CONTROLNET_DRAFT.format(controlnet="canny.safetensors", strength=12.0))

    def check_fix(messages):
        errors = messages[-1].content  # the repair request lists the structured errors
        assert "value_bigger_than_max" in errors and "value_not_in_list" in errors
        fixed = CONTROLNET_DRAFT.format(controlnet=CANNY, strength=0.8)
        return calls(("validate", {"workflow_text": fixed}), turn=3)

    def final(messages):
        assert tool_result(messages, "validate")["valid"] is True
        return answer(CONTROLNET_DRAFT.format(controlnet=CANNY, strength=0.8))

    return [calls(("search_nodes", {"words": "apply controlnet", "consumes": "CONTROL_NET"}),
                  ("list_models", {"kind": "controlnet"}), turn=0),
            calls(("get_node", {"name": "ControlNetApplyAdvanced"}), ("get_node", {"name": "ControlNetLoader"}),
                  turn=1),
            broken_draft, check_fix, final]


@pytest.fixture
def controlnet_folders(isolated_folders):
    _models(isolated_folders, {"checkpoints": ["sd15.safetensors"], "controlnet": [CANNY]})
    _png(isolated_folders / "input" / "house.png")
    return isolated_folders


CONTROLNET_REQUEST = "Use the edges of house.png as a canny ControlNet to draw a glass house in a forest"


def test_controlnet_request_is_planned_with_tools_on_the_comfyui_catalog(catalog_registry, controlnet_folders):
    assert len(catalog_registry) > 496  # the 496 ComfyUI classes beside the built-in ones
    llm = ToolScript(messages=iter([]), steps=controlnet_script(), seen=[])
    result = plan(CONTROLNET_REQUEST, chat_model=llm, registry=catalog_registry)
    assert result.status in ("valid", "partial"), (result.errors, result.summary)
    assert llm.bound == TOOL_NAMES
    assert tool_calls_in(result.trace) == ["search_nodes", "list_models", "get_node", "get_node", "validate"]
    entries = [t for t in result.trace if t["step"] == "tool_call"]
    assert entries[0]["args"] == {"words": "apply controlnet", "consumes": "CONTROL_NET"}
    assert "ControlNetApplyAdvanced" in entries[0]["result"]
    assert entries[1]["result"] == f"1 controlnet: {CANNY}"
    assert [e["phase"] for e in entries] == ["draft"] * 4 + ["repair"]
    assert entries[-1]["result"].startswith("valid")
    # what the tools gave the model came from the ComfyUI catalog
    seen = llm.seen[-1]
    hits = [n["name"] for n in tool_result(seen, "search_nodes")["nodes"]]
    assert "ControlNetApplyAdvanced" in hits
    schemas = [json.loads(m.content)["schema"] for m in seen if isinstance(m, ToolMessage) and m.name == "get_node"]
    assert "control_net: CONTROL_NET" in schemas[0] and "control_net_name" in schemas[1]
    first = next(t for t in result.trace if t["step"] == "validate")
    assert {e["type"] for e in first["errors"]} == {"value_bigger_than_max", "value_not_in_list"}
    assert result.repairs == 1 and result.llm_calls == 5 and result.tokens == 930 * 3 + 1900 * 2
    classes = {n["class_type"] for n in result.workflow.values()}
    assert {"ControlNetLoader", "ControlNetApplyAdvanced", "Canny", "LoadImage"} <= classes
    assert validate(result.workflow, catalog_registry).valid
    assert any(c["kind"] == "controlnet" for c in result.covered), result.covered


def test_the_tool_prompt_asks_for_english_expanded_prompts(catalog_registry, controlnet_folders):
    llm = ToolScript(messages=iter([]), steps=controlnet_script(), seen=[])
    plan(CONTROLNET_REQUEST, chat_model=llm, registry=catalog_registry)
    system = llm.seen[0][0].content
    assert "English" in system and "terse request" in system and "search_nodes" in system
    assert "Catalog:" in system and "ControlNet" in system


# ---- (b) Wan image-to-video on the ComfyUI catalog ------------------------------------------------------------
WAN_FILES = {"diffusion_models": ["wan2.1_i2v_480p_14B_fp8_e4m3fn.safetensors"],
             "text_encoders": ["umt5_xxl_fp8_e4m3fn_scaled.safetensors"], "vae": ["wan_2.1_vae.safetensors"],
             "clip_vision": ["clip_vision_h.safetensors"]}


def _adapt_wan_template(template: str, unet: str, clip_type: str) -> str:
    """What a model does with the template: keep its structure, put in our files, image and prompts."""
    lines = []
    for line in template.splitlines():
        line = line.split("  #")[0]
        if "UNETLoader(" in line:
            line = line.replace("wan2.1_i2v_480p_14B_fp16.safetensors", unet)
        if "CLIPLoader(" in line:
            line = line.replace('type="wan"', f'type="{clip_type}"')
        if "LoadImage(" in line:
            line = line.split("(")[0] + '(image="cat.png")'
        if "CLIPTextEncode(" in line and "Positive" not in line and "clip=" in line and "色调" not in line:
            line = line.split("(")[0] + ('(text="a ginger cat slowly turns its head toward the camera and '
                                         'blinks, soft window light, gentle camera push-in, cinematic", '
                                         'clip=' + line.split("clip=")[1])
        lines.append(line)
    return "\n".join(lines) + "\n"


def wan_script() -> list[Any]:
    def first_draft(messages):
        template = tool_result(messages, "get_template")["workflow_text"]
        assert "WanImageToVideo(" in template
        # mistakes a model makes: the template's own fp16 file, and a type name from memory
        return answer(_adapt_wan_template(template, "wan2.1_i2v_480p_14B_fp16.safetensors", "wan2.1"))

    def look_again(messages):
        assert "value_not_in_list" in messages[-1].content
        return calls(("get_node", {"name": "CLIPLoader"}), ("list_models", {"kind": "diffusion_models"}), turn=4)

    def fixed(messages):
        assert '"wan"' in tool_result(messages, "get_node")["schema"]
        unet = tool_result(messages, "list_models")["files"][0]
        template = tool_result(messages, "get_template")["workflow_text"]
        return answer(_adapt_wan_template(template, unet, "wan"))

    return [calls(("search_templates", {"words": "wan image to video", "task": "i2v"}),
                  ("search_nodes", {"words": "wan image to video"}), turn=0),
            calls(("get_template", {"id": "image_to_video_wan"}), ("get_node", {"name": "WanImageToVideo"}), turn=1),
            calls(("list_models", {"kind": "text_encoders"}), ("list_inputs", {}), turn=2),
            first_draft, look_again, fixed]


def test_wan_image_to_video_is_planned_with_tools_on_the_comfyui_catalog(catalog_registry, isolated_folders):
    _models(isolated_folders, WAN_FILES)
    _png(isolated_folders / "input" / "cat.png")
    llm = ToolScript(messages=iter([]), steps=wan_script(), seen=[])
    result = plan("Animate cat.png into a short video with Wan 2.1: the cat turns its head and blinks",
                  chat_model=llm, registry=catalog_registry)
    assert result.status in ("valid", "partial"), (result.errors, result.summary)
    assert tool_calls_in(result.trace) == ["search_templates", "search_nodes", "get_template", "get_node",
                                           "list_models", "list_inputs", "get_node", "list_models"]
    entries = {t["tool"]: t for t in result.trace if t["step"] == "tool_call"}
    assert "image_to_video_wan" in entries["search_templates"]["result"]
    assert "WanImageToVideo" in entries["search_nodes"]["result"]
    assert entries["list_inputs"]["result"] == "1 input files: cat.png"
    first = next(t for t in result.trace if t["step"] == "validate")
    bad = {(e["type"], e["input_name"]) for e in first["errors"]}
    assert bad == {("value_not_in_list", "unet_name"), ("value_not_in_list", "type")}
    assert result.repairs == 1 and result.llm_calls == 6
    workflow = result.workflow
    by_class = {n["class_type"]: n["inputs"] for n in workflow.values()}
    assert by_class["UNETLoader"]["unet_name"] == WAN_FILES["diffusion_models"][0]
    assert by_class["CLIPLoader"]["type"] == "wan" and by_class["LoadImage"]["image"] == "cat.png"
    assert {"WanImageToVideo", "CLIPVisionEncode", "CreateVideo", "SaveVideo"} <= set(by_class)
    assert validate(workflow, catalog_registry).valid


# ---- budgets ------------------------------------------------------------------------------------------------------
def test_the_tool_call_budget_ends_a_runaway_loop(catalog_registry, controlnet_folders):
    runaway = ToolScript(messages=iter([]), seen=[],
                         steps=[lambda m: calls(("search_nodes", {"words": "controlnet"}), turn=len(m))])
    result = plan(CONTROLNET_REQUEST, chat_model=runaway, registry=catalog_registry)
    assert result.status == "failed" and result.workflow is None
    assert tool_calls_in(result.trace) == ["search_nodes"] * 12  # the default budget
    budget = next(t for t in result.trace if t["step"] == "budget")
    assert budget["budget"] == "tool_calls" and budget["limit"] == 12 and budget["used"] == 12
    assert "budget (12) is spent" in result.summary and result.llm_calls == 13


def test_a_spent_budget_keeps_the_last_validated_workflow(catalog_registry, controlnet_folders):
    good = CONTROLNET_DRAFT.format(controlnet=CANNY, strength=0.8)
    steps = [calls(("validate", {"workflow_text": good}), turn=0)]
    steps += [calls(("get_node", {"name": "KSampler"}), ("list_inputs", {}), turn=i) for i in range(1, 5)]
    llm = ToolScript(messages=iter([]), steps=steps, seen=[])
    graph = PlannerGraph(catalog_registry, llm, max_tool_calls=5)
    state = graph.invoke(CONTROLNET_REQUEST)
    assert state["status"] == "valid" and state["budget_spent"] == "tool_calls"
    assert parse_text(good, catalog_registry) == state["workflow"]
    steps_seen = [t["step"] for t in state["trace"]]
    assert steps_seen.count("tool_call") == 5 and "budget" in steps_seen
    assert steps_seen[-2:] == ["validate", "answer"] and "budget spent" in state["summary"]


def test_the_token_budget_ends_the_loop(catalog_registry, controlnet_folders):
    llm = ToolScript(messages=iter([]), seen=[], steps=[lambda m: calls(("list_inputs", {}), turn=len(m))])
    state = PlannerGraph(catalog_registry, llm, max_tokens=2_500).invoke(CONTROLNET_REQUEST)
    assert state["llm_calls"] == 3 and state["tokens"] == 2_790  # the call that went over is the last
    budget = next(t for t in state["trace"] if t["step"] == "budget")
    assert budget["budget"] == "tokens" and budget["used"] == 2_790 and budget["limit"] == 2_500
    assert state["status"] == "failed"


def test_a_model_without_bind_tools_gets_the_catalog_in_its_prompt(catalog_registry, controlnet_folders):
    plain = GenericFakeChatModel(messages=iter([answer(CONTROLNET_DRAFT.format(controlnet=CANNY, strength=0.8))]))
    graph = PlannerGraph(catalog_registry, plain)
    assert not graph.uses_tools
    state = graph.invoke(CONTROLNET_REQUEST)
    assert state["status"] == "valid" and not tool_calls_in(state["trace"])
    assert next(t for t in state["trace"] if t["step"] == "retrieve")["mode"] == "catalog-in-prompt"


# ---- the OpenAI-compatible path over HTTP -----------------------------------------------------------------------
SIMPLE = '''ckpt = CheckpointLoaderSimple(ckpt_name="m.safetensors")
pos = CLIPTextEncode(text="a red fox sitting in fresh snow, soft winter light, detailed fur, photograph", clip=ckpt.CLIP)
neg = CLIPTextEncode(text="blurry, low quality", clip=ckpt.CLIP)
lat = EmptyLatentImage(width=512, height=512, batch_size=1)
s = KSampler(model=ckpt.MODEL, seed=1, steps=20, cfg=7.0, sampler_name="euler", scheduler="normal", positive=pos.CONDITIONING, negative=neg.CONDITIONING, latent_image=lat.LATENT, denoise=1.0)
img = VAEDecode(samples=s.LATENT, vae=ckpt.VAE)
out = SaveImage(images=img.IMAGE, filename_prefix="fox")
'''


def test_openai_compatible_tool_calls_over_http(registry, isolated_folders, monkeypatch):
    _models(isolated_folders, {"checkpoints": ["m.safetensors"]})
    server = FakeProviders().start()
    server.chat_script = [
        {"tool_calls": [{"name": "search_nodes", "arguments": {"words": "sampler", "produces": "LATENT"}},
                        {"name": "list_models", "arguments": {"kind": "checkpoints"}}]},
        {"tool_calls": [{"name": "validate", "arguments": {"workflow_text": SIMPLE.replace("m.safe", "x.safe")}}]},
        {"content": f"```python\n{SIMPLE}```"}]
    try:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
        result = plan("a fox in the snow", provider="openai-compatible", model="scripted-tools", registry=registry)
    finally:
        server.stop()
    assert result.status == "valid", (result.errors, result.summary)
    assert result.llm_calls == 3 and result.tokens == 360
    sent = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")]
    assert len(sent) == 3 and [t["function"]["name"] for t in sent[0]["tools"]] == TOOL_NAMES
    tool_messages = [m for m in sent[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0_0", "call_0_1"]
    assert json.loads(tool_messages[1]["content"]) == {"kind": "checkpoints", "files": ["m.safetensors"],
                                                       "count": 1}
    checked = json.loads([m for m in sent[2]["messages"] if m["role"] == "tool"][-1]["content"])
    assert checked["valid"] is False and checked["errors"][0]["type"] == "value_not_in_list"
    assert tool_calls_in(result.trace) == ["search_nodes", "list_models", "validate"]


# ---- cassettes ---------------------------------------------------------------------------------------------------
def _stable(trace: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k != "seconds"} for t in trace]


def test_a_recorded_tool_run_replays_exactly(catalog_registry, controlnet_folders, tmp_path):
    cassette = Cassette(tmp_path / "tools.cassette.json")
    inner = ToolScript(messages=iter([]), steps=controlnet_script(), seen=[])
    recorded = plan(CONTROLNET_REQUEST, chat_model=RecordingChatModel(inner=inner, cassette=cassette),
                    registry=catalog_registry)
    cassette.save()
    assert recorded.status in ("valid", "partial") and len(cassette.entries) == 5
    saved = json.loads(cassette.path.read_text(encoding="utf-8"))
    with_calls = [e for e in saved["entries"].values() if e.get("tool_calls")]
    assert len(with_calls) == 3 and all(e["tools"] == TOOL_NAMES for e in saved["entries"].values())
    assert with_calls[0]["tool_calls"][0] == {"name": "search_nodes", "id": "t0_0",
                                              "args": {"words": "apply controlnet", "consumes": "CONTROL_NET"}}
    replayed = plan(CONTROLNET_REQUEST, chat_model=ReplayChatModel(cassette=Cassette(cassette.path)),
                    registry=catalog_registry)
    assert replayed.workflow == recorded.workflow and replayed.status == recorded.status
    assert _stable(replayed.trace) == _stable(recorded.trace)
    assert (replayed.llm_calls, replayed.tokens, replayed.repairs) == (recorded.llm_calls, recorded.tokens, 1)
    # another request is a conversation the cassette never saw
    missed = plan("Use house.png as a depth ControlNet for a castle", registry=catalog_registry,
                  chat_model=ReplayChatModel(cassette=Cassette(cassette.path)))
    assert missed.status == "provider_error" and missed.errors[-1]["type"] == CassetteMissError.__name__


def test_a_cassette_without_tools_replays_on_the_prompt_path(registry, tmp_path):
    cassette = Cassette(tmp_path / "plain.json")
    with pytest.raises(NotImplementedError):
        ReplayChatModel(cassette=cassette).bind_tools(PlannerTools(registry).langchain_tools())
    with pytest.raises(NotImplementedError):  # the recorder cannot bind what its model cannot call
        RecordingChatModel(inner=GenericFakeChatModel(messages=iter([])), cassette=cassette).bind_tools([])


# ---- the tools on their own ----------------------------------------------------------------------------------------
def test_tools_answer_bad_input_with_structured_errors(catalog_registry, controlnet_folders):
    tools = PlannerTools(catalog_registry)
    assert tools.run("get_node", {"name": "ControlNetApplyAdvancd"})["error"]["details"]["suggestions"][0] == \
        "ControlNetApplyAdvanced"
    assert tools.run("get_node", {})["error"]["type"] == "bad_arguments"
    assert tools.run("no_such_tool", {})["error"]["type"] == "unknown_tool"
    assert tools.run("search_nodes", {})["error"]["type"] == "bad_arguments"
    assert "CONTROL_NET" in tools.run("search_nodes", {"words": "x", "produces": "CONTROLNET"})["hint"]
    assert tools.run("list_models", {"kind": "lora"})["error"]["details"]["suggestions"] == ["loras"]
    assert tools.run("list_models", {})["kinds"]["controlnet"] == 1
    assert tools.run("search_templates", {"task": "video"})["error"]["type"] == "unknown_task"
    assert tools.run("get_template", {"id": "image_to_video_wann"})["error"]["type"] == "template_not_found"
    assert tools.run("validate", {"workflow_text": "x = = ("})["parsed"] is False
    assert tools.run("validate", {"workflow_text": " "})["error"]["type"] == "bad_arguments"


def test_tool_results_are_bounded(catalog_registry):
    tools = PlannerTools(catalog_registry)
    assert len(tools.run("search_nodes", {"words": "image"})["nodes"]) <= 10
    assert len(tools.run("search_templates", {"words": ""})["templates"]) <= 8
    longest = max((tools.run("get_template", {"id": t})
                   for t in ("video_wan2_2_14B_i2v", "image_to_video_wan")), key=lambda r: len(str(r)))
    assert len(longest["workflow_text"]) <= 8_000
    broken = "\n".join(f"n{i} = NoSuchNode{i}(x=1)" for i in range(60))
    checked = tools.run("validate", {"workflow_text": broken})
    assert len(checked["errors"]) == 20 and checked["error_count"] >= 60


# ---- streaming, runtime repair, checkpoints -------------------------------------------------------------------------
def test_each_tool_call_is_streamed_as_its_own_step(catalog_registry, controlnet_folders):
    steps: list[dict] = []
    llm = ToolScript(messages=iter([]), steps=controlnet_script(), seen=[])
    result = plan(CONTROLNET_REQUEST, chat_model=llm, registry=catalog_registry, on_step=steps.append)
    assert [s["tool"] for s in steps if s["step"] == "tool_call"] == tool_calls_in(result.trace)
    assert len(tool_calls_in(result.trace)) == 5


def test_a_runtime_failure_is_repaired_with_tools(reg):
    failing = 'bad = Fail(value=1, message="division by zero")\nshow = ShowInt(value=bad.INT)\n'
    working = 'good = IntAdd(a=1, b=2)\nshow = ShowInt(value=good.INT)\n'

    def after_failure(messages):
        assert "division by zero" in messages[-1].content
        return calls(("search_nodes", {"words": "add integers", "produces": "INT"}), turn=2)

    def fixed(messages):
        assert "IntAdd" in [n["name"] for n in tool_result(messages, "search_nodes")["nodes"]]
        return answer(working)

    llm = ToolScript(messages=iter([]), steps=[answer(failing), after_failure, fixed], seen=[])
    result = plan("add one and two and show it", chat_model=llm, registry=reg, run=True)
    assert result.status == "ran", (result.errors, result.summary)
    assert result.outputs == {"show": {"value": [3]}}
    assert [t["status"] for t in result.trace if t["step"] == "run"] == ["error", "success"]
    assert [(t["phase"], t["tool"]) for t in result.trace if t["step"] == "tool_call"] == [("repair", "search_nodes")]


def test_a_tool_conversation_is_checkpointed(catalog_registry, controlnet_folders, tmp_path):
    from agent.planner import _checkpointer

    db = tmp_path / "plans.sqlite3"
    llm = ToolScript(messages=iter([]), steps=controlnet_script(), seen=[])
    result = plan(CONTROLNET_REQUEST, chat_model=llm, registry=catalog_registry, checkpoint_path=db)
    assert result.status in ("valid", "partial") and result.thread_id
    graph = PlannerGraph(catalog_registry, llm, checkpointer=_checkpointer(db))
    state = graph.snapshot(result.thread_id)
    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds.count("ToolMessage") == 5 and state["tool_calls"] == 5
    assert state["workflow"] == result.workflow
