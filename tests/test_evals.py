"""Evals: every check type passes and fails when it should; suites run; reports in three forms;
recorded LLM runs replay to the same results; result files compare."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SHARED, run_cli
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
