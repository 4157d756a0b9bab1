"""Evals: every check type passes and fails when it should; suites run; reports in three forms;
recorded LLM runs replay to the same results; result files compare."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SHARED, run_cli, shared_catalog
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from evals.cassette import Cassette, CassetteMissError, RecordingChatModel, ReplayChatModel
from evals.checks import check_workflow
from evals.report import compare, html_report, terminal_table
from evals.runner import run_suite
from evals.suite import Case, Suite, SuiteError, load_suite

WF = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "A Red Fox", "clip": ["1", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "steps": 30, "denoise": 0.6, "cfg": 7}},
}


@pytest.mark.parametrize("expect, ok", [
    ({"validates": True}, True), ({"validates": False}, False),
    ({"nodes": ["KSampler"]}, True), ({"nodes": ["SaveImage"]}, False),
    ({"nodes": [["SaveImage", "KSampler"]]}, True), ({"nodes": [["SaveImage", "PreviewImage"]]}, False),
    ({"inputs": [{"class_type": "KSampler", "input": "steps", "equals": 30}]}, True),
    ({"inputs": [{"class_type": "KSampler", "input": "steps", "equals": 31}]}, False),
    ({"inputs": [{"class_type": "KSampler", "input": "cfg", "equals": 7.0}]}, True),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "contains": "red fox"}]}, True),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "contains": "wolf"}]}, False),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "contains_any": ["狐狸", "fox"]}]}, True),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "contains_any": ["狐狸", "cat"]}]}, False),
    ({"inputs": [{"class_type": "KSampler", "input": "denoise", "min": 0.5, "max": 0.7}]}, True),
    ({"inputs": [{"class_type": "KSampler", "input": "denoise", "min": 0.61, "max": 0.7}]}, False),
    ({"inputs": [{"class_type": "KSampler", "input": "positive", "contains": "2"}]}, False),  # a link is no value
    ({"inputs": [{"class_type": "VAEDecode", "input": "samples", "equals": 1}]}, False),
    ({"links": [{"from": "CLIPTextEncode", "to": "KSampler", "input": "positive"}]}, True),
    ({"links": [{"from": "CLIPTextEncode", "to": "KSampler", "input": "negative"}]}, False),
    ({"links": [{"from": "CheckpointLoaderSimple", "to": "KSampler", "input": "positive"}]}, False),
    ({"absent": ["LoraLoader"]}, True), ({"absent": ["KSampler"]}, False),
    ({"links": [{"from": ["LoraLoader", "CLIPTextEncode"], "to": ["KSamplerAdvanced", "KSampler"],
                 "input": "positive"}]}, True),
    ({"links": [{"from": ["LoraLoader", "EmptyLatentImage"], "to": ["KSampler"], "input": "positive"}]}, False),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "not_contains": "wolf"}]}, True),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "not_contains": "fox"}]}, False),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "contains": "fox",
                  "not_contains_any": ["upscale", "then"]}]}, True),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "contains": "fox",
                  "not_contains_any": ["red", "then"]}]}, False),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "feeds": "positive", "contains": "fox"}]}, True),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "feeds": "negative", "contains": "fox"}]}, False),
    ({"inputs": [{"class_type": "CLIPTextEncode", "input": "text", "feeds": "negative", "not_contains": "x"}]},
     False),  # no CLIPTextEncode feeds a negative at all
])
def test_each_check_type_passes_and_fails(expect, ok):
    results = check_workflow(WF, expect, valid=True)
    assert all(r.passed for r in results) == ok
    if not ok:
        assert any(r.detail for r in results if not r.passed)


def test_bad_suites_are_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite: x\ncases:\n  - id: a\n")
    with pytest.raises(SuiteError, match="prompt"):
        load_suite(bad)
    bad.write_text("suite: x\ncases:\n  - {id: a, prompt: p}\n  - {id: a, prompt: q}\n")
    with pytest.raises(SuiteError, match="repeats"):
        load_suite(bad)


@pytest.mark.slow
def test_dev_suite_offline_with_all_three_reports(tmp_path, isolated_folders):
    suite = SHARED / "evals" / "dev.yaml"
    if not suite.is_file():
        pytest.skip(f"no dev suite at {suite}")
    out = tmp_path / "reports"
    proc = run_cli("eval", str(suite), "--out", str(out), "--min-pass-rate", "0.9")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "suite dev (offline): 20 cases" in proc.stdout
    data = json.loads((out / "dev-offline.json").read_text())
    assert data["metrics"]["pass_rate"] >= 0.9 and len(data["cases"]) == 20
    page = (out / "dev-offline.html").read_text()
    assert page.count("<svg") == 4 and "Pass rate by category" in page and "t2i-fox-en" in page
    assert (out / "dev-offline.txt").read_text().startswith("case")


SUITE = Suite(suite="mini", environment={"checkpoints": ["m.safetensors"]}, cases=[
    Case(id="fox", prompt="a fox in the snow", expect={"validates": True, "nodes": ["KSampler"]}),
    Case(id="owl", prompt="an owl on a branch", expect={"validates": True, "inputs": [
        {"class_type": "CLIPTextEncode", "input": "text", "contains": "owl"}]}),
])
FOX = '```python\nck = CheckpointLoaderSimple(ckpt_name="m.safetensors")\np = CLIPTextEncode(text="{w}", clip=ck.CLIP)\n' \
      'l = EmptyLatentImage(width=512, height=512, batch_size=1)\ns = KSampler(model=ck.MODEL, seed=1, steps=20, ' \
      'cfg=7.0, sampler_name="euler", scheduler="normal", positive=p.CONDITIONING, negative=p.CONDITIONING, ' \
      'latent_image=l.LATENT, denoise=1.0)\nd = VAEDecode(samples=s.LATENT, vae=ck.VAE)\no = SaveImage(images=d.IMAGE, ' \
      'filename_prefix="x")\n```'


def test_recorded_llm_run_replays_to_the_same_results(registry, tmp_path):
    answers = iter([AIMessage(FOX.format(w="a fox"), usage_metadata={"input_tokens": 5, "output_tokens": 7,
                                                                     "total_tokens": 12}),
                    AIMessage(FOX.format(w="a cat"))])
    cassette = Cassette(tmp_path / "run.cassette.json")
    recorder = RecordingChatModel(inner=GenericFakeChatModel(messages=answers), cassette=cassette)
    recorded = run_suite(SUITE, registry=registry, chat_model=recorder, workdir=tmp_path / "a")
    cassette.save()
    replayed = run_suite(SUITE, registry=registry, chat_model=ReplayChatModel(cassette=Cassette(cassette.path)),
                         workdir=tmp_path / "b")
    strip = lambda r: [c.model_dump(exclude={"latency_s"}) for c in r.cases]  # noqa: E731
    assert strip(recorded) == strip(replayed)
    assert [c.passed for c in replayed.cases] == [True, False]
    assert replayed.metrics.tokens == 12
    with pytest.raises(CassetteMissError):
        ReplayChatModel(cassette=Cassette(tmp_path / "empty.json")).invoke("never recorded")
    text = compare(recorded, replayed)
    assert "regressed (0)" in text and "improved (0)" in text


@pytest.mark.slow
def test_compare_names_regressions_and_reports_render(registry, tmp_path):
    good = run_suite(SUITE, registry=registry, workdir=tmp_path / "g")
    worse = good.model_copy(deep=True)
    worse.cases[0].passed = False
    text = compare(good, worse)
    assert "regressed (1): fox" in text
    table = terminal_table(worse)
    assert "FAIL" in table and "suite mini (offline)" in table
    assert "<svg" in html_report(worse)
    proc = run_cli("eval-compare", str(tmp_path / "missing.json"), str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "cannot compare" in proc.stderr


def test_shipped_suite_covers_every_node_family():
    suite = load_suite(REPO / "evals" / "suites" / "nodeweaver.yaml")
    named = json.dumps([c.expect for c in suite.cases])
    for family in ("KSampler", "LoraLoader", "LoadImage", "ImageInvert", "ImageScaleBy", "LLMChat", "SaveText",
                   "DashScopeImageSynthesis", "LatentUpscaleBy", "LoadText"):
        assert family in named


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(registry, tmp_path):
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium) to render the report")
    from PIL import Image

    result = run_suite(SUITE, registry=registry, workdir=tmp_path / "w")
    page = tmp_path / "report.html"
    page.write_text(html_report(result), encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900", f"--screenshot={shot}",
                    page.as_uri()], capture_output=True, timeout=120, check=False)
    with Image.open(shot) as image:
        colors = {image.getpixel((x, y))[:3] for x in range(0, image.width, 4) for y in range(0, image.height, 4)}
    assert (47, 158, 68) in colors  # the green bars of the pass-rate charts were drawn


def test_eval_run_mode_executes_plans_on_the_tiny_model(registry, tmp_path):
    pytest.importorskip("torch")
    suite = Suite(suite="run", environment={"checkpoints": ["any_model.safetensors"], "input": ["pic.png"]}, cases=[
        Case(id="t2i", prompt="a fox in the snow, 64x64, 2 steps", expect={"validates": True}),
        Case(id="invert", prompt="Invert pic.png and save it", expect={"nodes": ["ImageInvert"]}),
    ])
    result = run_suite(suite, registry=registry, run=True, workdir=tmp_path)
    assert [c.ran for c in result.cases] == [True, True], [c.run_error for c in result.cases]
    assert result.metrics.run_rate == 1.0


# ---- the planner-reach format: outcome checks, count, catalog, base workflows, environments ----------------------

from evals.checks import PlanOutcome  # noqa: E402

COVERED = [{"stage": 0, "kind": "generate", "what": "a fox", "nodes": ["3"], "reason": "", "suggestion": ""},
           {"stage": 1, "kind": "upscale", "what": "2x", "nodes": ["5"], "reason": "", "suggestion": ""}]
MISSING = [{"stage": 2, "kind": "interpolate", "what": "60 fps", "nodes": [], "reason": "no core node",
            "suggestion": "ComfyUI-Frame-Interpolation"}]
WF2 = {**WF, "4": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}},
       "5": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}}}


@pytest.mark.parametrize("expect, outcome, ok", [
    ({"status": "partial"}, {"status": "partial"}, True),
    ({"status": "valid"}, {"status": "partial"}, False),
    ({"status": ["valid", "ran"]}, {"status": "ran"}, True),
    ({"status": ["valid", "ran"]}, {"status": "question"}, False),
    ({"covered": ["generate", "upscale"]}, {"covered": COVERED}, True),
    ({"covered": ["controlnet"]}, {"covered": COVERED}, False),
    ({"covered": [["img2img", "restyle"], "upscale"]}, {"covered": COVERED}, False),
    ({"covered": [["replace", "generate"], "upscale"]}, {"covered": COVERED}, True),
    ({"covered": ["upscale"]}, {}, False),  # a planner that reports no coverage does not pass a coverage check
    ({"not_covered": ["interpolate"]}, {"not_covered": MISSING}, True),
    ({"not_covered": ["interpolate"]}, {"not_covered": [], "covered": COVERED}, False),
    ({"question": True}, {"status": "question", "question": {"text": "Which LoRA?", "slot": "lora"}}, True),
    ({"question": True}, {"status": "valid"}, False),
    ({"question": False}, {"status": "valid"}, True),
    ({"question": False}, {"status": "question", "question": {"slot": "image"}}, False),
    ({"question_slot": "lora"}, {"status": "question", "question": {"text": "Which LoRA?", "slot": "lora"}}, True),
    ({"question_slot": "lora"}, {"status": "question", "question": {"text": "Which image?", "slot": "image"}},
     False),
    ({"question_slot": "lora"}, {"status": "valid"}, False),
])
def test_outcome_checks_pass_and_fail(expect, outcome, ok):
    results = check_workflow(WF, expect, valid=True, outcome=PlanOutcome(**outcome))
    assert results and all(r.passed for r in results) == ok
    if not ok:
        assert all(r.detail for r in results if not r.passed)


@pytest.mark.parametrize("count, ok", [
    ({"class_type": "SaveImage", "equals": 2}, True), ({"class_type": "SaveImage", "equals": 1}, False),
    ({"class_type": "SaveImage", "min": 2}, True), ({"class_type": "SaveImage", "min": 3}, False),
    ({"class_type": "KSampler", "max": 1}, True), ({"class_type": "SaveImage", "max": 1}, False),
    ({"class_type": "LoraLoader", "equals": 0}, True), ({"class_type": "LoraLoader", "min": 1}, False),
    ([{"class_type": "SaveImage", "equals": 2}, {"class_type": "CheckpointLoaderSimple", "equals": 1}], True),
    ([{"class_type": "SaveImage", "equals": 2}, {"class_type": "CheckpointLoaderSimple", "equals": 2}], False),
    ({"class_type": ["SaveImage", "PreviewImage"], "equals": 2}, True),
    ({"class_type": ["SaveImage", "KSampler"], "max": 2}, False),
])
def test_count_check_passes_and_fails(count, ok):
    results = check_workflow(WF2, {"count": count}, valid=True)
    assert all(r.passed for r in results) == ok
    if not ok:
        assert any("found" in r.detail for r in results if not r.passed)


def _fake_planner(monkeypatch, seen: list, edit=None, *, takes_workflow: bool = True):
    """Stand in for agent.planner.plan inside the runner: returns `edit(base)` (or a copy of WF) as the plan."""
    from agent.planner import PlanResult

    def build(request, base):
        seen.append((request, base))
        workflow = edit(json.loads(json.dumps(base))) if edit and base else json.loads(json.dumps(WF))
        return PlanResult(status="valid", request=request, planner="offline", workflow=workflow)

    if takes_workflow:
        def fake(request, *, registry=None, chat_model=None, provider=None, run=False, executor=None,
                 workflow=None):
            return build(request, workflow)
    else:
        def fake(request, *, registry=None, chat_model=None, provider=None, run=False, executor=None):
            return build(request, None)
    monkeypatch.setattr("evals.runner.plan", fake)


BLUR = {"1": {"class_type": "LoadImage", "inputs": {"image": "pic.png"}},
        "2": {"class_type": "ImageQuantize", "inputs": {"image": ["1", 0], "colors": 16, "dither": "none"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "blur"}}}


def _write_suite(folder, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.yaml").write_text(text, encoding="utf-8")
    return folder / "s.yaml"


def test_suite_catalog_is_imported_into_a_copy_of_the_registry(registry, tmp_path, monkeypatch, catalog_data):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "mini.json").write_text(json.dumps({"ImageQuantize": catalog_data["ImageQuantize"]}))
    body = ("suite: blur\n{catalog}environment: {{input: [pic.png]}}\ncases:\n"
            "  - {{id: blur, prompt: blur pic.png, workflow: ../wf/blur.json, expect: {{validates: true}}}}\n")
    (tmp_path / "wf").mkdir()
    (tmp_path / "wf" / "blur.json").write_text(json.dumps(BLUR))
    with_cat = load_suite(_write_suite(tmp_path / "suites", body.format(catalog="catalog: ../cat/mini.json\n")))
    assert with_cat.catalog == str((tmp_path / "cat" / "mini.json").resolve())
    assert with_cat.cases[0].workflow == BLUR  # the path, relative to the suite file, was read
    seen: list = []
    _fake_planner(monkeypatch, seen, edit=lambda base: base)
    assert run_suite(with_cat, registry=registry, workdir=tmp_path / "a").cases[0].passed
    assert "ImageQuantize" not in registry  # the caller's registry was not changed
    plain = load_suite(_write_suite(tmp_path / "suites2", body.format(catalog="").replace("../wf", "../wf")))
    assert not run_suite(plain, registry=registry, workdir=tmp_path / "b").cases[0].passed
    forced = run_suite(plain, registry=registry, workdir=tmp_path / "c", catalog=tmp_path / "cat" / "mini.json")
    assert forced.cases[0].passed  # the runner option does what `catalog:` does
    with pytest.raises(SuiteError, match="catalog"):
        load_suite(_write_suite(tmp_path / "suites3", body.format(catalog="catalog: ../cat/none.json\n")))


def test_edit_case_passes_its_base_workflow_to_the_planner(registry, tmp_path, monkeypatch):
    def thirty_steps(base):
        base["3"]["inputs"]["steps"] = 30
        return base

    base = {**WF, "3": {**WF["3"], "inputs": {**WF["3"]["inputs"], "steps": 20}}}
    suite = Suite(suite="edits", cases=[
        Case(id="steps", prompt="把采样步数改成30", workflow=base,
             expect={"inputs": [{"class_type": "KSampler", "input": "steps", "equals": 30}]}),
        Case(id="new", prompt="a fox", expect={"nodes": ["KSampler"]})])
    seen: list = []
    _fake_planner(monkeypatch, seen, edit=thirty_steps)
    result = run_suite(suite, registry=registry, workdir=tmp_path)
    assert [c.passed for c in result.cases] == [True, True]
    assert seen == [("把采样步数改成30", base), ("a fox", None)]
    assert base["3"]["inputs"]["steps"] == 20  # the suite's copy is not edited in place
    seen.clear()
    _fake_planner(monkeypatch, seen, takes_workflow=False)
    old = run_suite(suite, registry=registry, workdir=tmp_path / "old")
    assert [c.passed for c in old.cases] == [False, True] and seen == [("a fox", None)]
    assert "takes no base workflow" in old.cases[0].failed_checks[0].detail

    def broken(base):
        raise KeyError("steps")

    _fake_planner(monkeypatch, [], edit=broken)
    crashed = run_suite(suite, registry=registry, workdir=tmp_path / "crash")
    assert [c.status for c in crashed.cases] == ["crashed", "valid"]
    assert "raised KeyError" in crashed.cases[0].failed_checks[0].detail


def test_bad_base_workflows_and_environment_kinds_are_reported(tmp_path):
    (tmp_path / "w.json").write_text('{"1": {"inputs": {}}}')
    with pytest.raises(SuiteError, match="API-format"):
        load_suite(_write_suite(tmp_path, "suite: x\ncases:\n  - {id: a, prompt: p, workflow: w.json}\n"))
    with pytest.raises(SuiteError, match="cannot read its base workflow"):
        load_suite(_write_suite(tmp_path, "suite: x\ncases:\n  - {id: a, prompt: p, workflow: none.json}\n"))
    with pytest.raises(SuiteError, match="controlnets"):
        load_suite(_write_suite(tmp_path, "suite: x\nenvironment: {controlnets: [a.pth]}\ncases: []\n"))


def test_environment_fills_every_model_folder_and_input_kind(tmp_path):
    from PIL import Image

    from evals.environment import KIND_FOLDERS, environment
    from runtime import folders

    spec = {kind: [f"{kind}_model.safetensors"] for kind in KIND_FOLDERS}
    spec["input"] = ["photo.png", "room.jpg", "mask.png", "clip.mp4", "loop.webm"]
    with environment(spec, tmp_path):
        for kind in ("checkpoints", "loras", "vae", "upscale_models", "clip_vision", "style_models", "embeddings"):
            assert folders.model_files(kind) == [f"{kind}_model.safetensors"], kind
        assert folders.model_files("controlnet") == ["controlnet_model.safetensors", "t2i_adapter_model.safetensors"]
        assert folders.model_files("text_encoders") == ["clip_model.safetensors", "text_encoders_model.safetensors"]
        assert folders.model_files("diffusion_models") == ["diffusion_models_model.safetensors",
                                                           "unet_model.safetensors"]
        assert {"photo.png", "room.jpg", "mask.png", "clip.mp4", "loop.webm"} <= set(folders.input_files())
        inputs = folders.input_dir()
    with Image.open(inputs / "mask.png") as mask:
        assert mask.mode == "RGBA" and mask.getextrema()[3] == (0, 255)  # a real mask: some area, not all
    assert (inputs / "clip.mp4").stat().st_size > 0


def test_coverage_rate_counts_cases_whose_nodes_are_all_present(registry, tmp_path, monkeypatch):
    _fake_planner(monkeypatch, [])
    suite = Suite(suite="cov", cases=[
        Case(id="a", prompt="x", expect={"nodes": ["KSampler", ["SaveImage", "CLIPTextEncode"]], "absent": ["KSampler"]}),
        Case(id="b", prompt="y", expect={"nodes": ["KSampler", "ImageUpscaleWithModel"]}),
        Case(id="c", prompt="z", expect={"inputs": [{"class_type": "KSampler", "input": "steps", "equals": 30}]})])
    result = run_suite(suite, registry=registry, workdir=tmp_path)
    assert [c.nodes_present for c in result.cases] == [True, False, None]
    assert result.metrics.coverage_rate == 0.5 and result.metrics.pass_rate == round(1 / 3, 4)


REACH_SUITES = ("planner_reach.yaml", "planner_edits.yaml", "reach_dev.yaml")


@pytest.mark.parametrize("name", REACH_SUITES)
def test_reach_suites_load_with_their_catalog(name):
    shared_catalog()  # the suites name it; without ../shared they cannot load
    suite = load_suite(REPO / "evals" / "suites" / name)
    assert suite.catalog and suite.catalog.endswith("comfyui_object_info.json")
    langs = {c.lang for c in suite.cases}
    assert langs == {"en", "zh"}
    minimum = {"planner_reach.yaml": 60, "planner_edits.yaml": 15, "reach_dev.yaml": 90}[name]
    assert len(suite.cases) >= minimum
    if name == "planner_edits.yaml":
        assert all(isinstance(c.workflow, dict) for c in suite.cases)


BASES = sorted(p.name for p in (REPO / "evals" / "suites" / "workflows").glob("*.json"))
@pytest.mark.parametrize("name", BASES)
def test_base_workflows_validate_against_the_comfyui_catalog(name, catalog_registry, tmp_path):
    from compiler import validate
    from evals.environment import environment

    suite = load_suite(REPO / "evals" / "suites" / "planner_edits.yaml")
    assert len(BASES) >= 4 and all(c.workflow for c in suite.cases)
    workflow = json.loads((REPO / "evals" / "suites" / "workflows" / name).read_text())
    with environment(suite.environment, tmp_path):
        errors = [e.message for e in validate(workflow, catalog_registry).errors]
    assert not errors, errors


@pytest.mark.slow
def test_planner_reach_and_edit_suites_pass_offline(tmp_path):
    """The issue's bar: the offline planner passes ≥ 90% of the public reach and edit suites."""
    shared_catalog()
    rates = {}
    # reach_blind* were written without reading the planner (out-of-sample when measured); regressions now
    for name in ("planner_reach.yaml", "planner_edits.yaml", "reach_dev.yaml", "reach_blind.yaml",
                 "reach_blind2.yaml", "reach_blind3.yaml"):
        result = run_suite(load_suite(REPO / "evals" / "suites" / name), workdir=tmp_path / name)
        rates[name] = result.metrics.pass_rate
        failed = [(c.id, [f.check for f in c.failed_checks]) for c in result.cases if not c.passed]
        print(f"{name}: pass {result.metrics.pass_rate:.0%}, coverage {result.metrics.coverage_rate}, "
              f"valid {result.metrics.valid_rate:.0%}; failed: {failed}")
    assert all(rate >= 0.9 for rate in rates.values()), rates
