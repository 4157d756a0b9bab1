"""The judge: output images and the request go to a vision model over real HTTP (the local fake provider),
a verdict comes back, and `nodeweaver eval --run --judge` reports it as "resolved" beside "ran", recorded
and replayed through the eval's cassette like the planner's calls."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from fakes.provider_server import KEY, FakeProviders
from PIL import Image

from evals.judge import judge, make_judge_model, parse_verdict
from nodes.api.errors import ProviderConfigError
from nodeweaver.cli import main

SUITE = """suite: judged
environment:
  input: [photo.png]
cases:
  - id: invert-blue
    prompt: Invert the colors of photo.png and save it as a blue picture
  - id: invert-red
    prompt: Invert the colors of photo.png and save it as a red picture
"""


@pytest.fixture(scope="module")
def fake():
    server = FakeProviders().start()
    yield server
    server.stop()


@pytest.fixture
def openai(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    monkeypatch.setenv("NODEWEAVER_PROVIDER_TIMEOUT", "10")
    return fake


def _png(tmp_path: Path, name: str, colour: tuple[int, int, int]) -> Path:
    path = tmp_path / name
    Image.new("RGB", (32, 24), colour).save(path)
    return path


def test_the_judge_sends_the_images_and_reads_the_verdict(openai, tmp_path):
    model = make_judge_model("openai-compatible", "vision-ok")
    blue = _png(tmp_path, "blue.png", (20, 40, 220))
    yes = judge(model, "a blue square", [blue])
    no = judge(model, "a red square", [blue])
    assert (yes.resolved, no.resolved) == (True, False) and yes.images == 1 and yes.error is None
    assert "mostly blue" in yes.reason
    body = [r for r in openai.requests if r.get("model") == "vision-ok"][-1]["body"]
    parts = body["messages"][-1]["content"]
    assert parts[0]["type"] == "text" and "a red square" in parts[0]["text"]
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.size == (32, 24) and sent.getpixel((0, 0)) == (20, 40, 220)


def test_a_provider_failure_is_the_verdicts_error_not_a_crash(openai, tmp_path):
    verdict = judge(make_judge_model("openai-compatible", "moderated"), "a blue square",
                    [_png(tmp_path, "b.png", (0, 0, 255))])
    assert verdict.resolved is None and verdict.error


def test_verdicts_are_read_from_fenced_or_bare_json_and_nonsense_is_no_verdict():
    assert parse_verdict('Sure.\n```json\n{"resolved": false, "reason": "no fox"}\n```').resolved is False
    assert parse_verdict('{"resolved": true, "reason": "fine"}').reason == "fine"
    unread = parse_verdict("I think it looks nice")
    assert unread.resolved is None and "no verdict" in unread.error
    assert parse_verdict('{"resolved": "yes"}').resolved is None


def test_an_unknown_judge_provider_is_refused_up_front():
    with pytest.raises(ProviderConfigError):
        make_judge_model("no-such-provider")


def test_eval_judges_what_ran_records_the_judge_and_replays_it(openai, tmp_path, capsys):
    suite = tmp_path / "judged.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    cassette = tmp_path / "judge.cassette.json"
    out = tmp_path / "recorded"
    code = main(["eval", str(suite), "--run", "--judge", "openai-compatible", "--judge-model", "vision-ok",
                 "--record", str(cassette), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    recorded = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    by_id = {c["id"]: c for c in recorded["cases"]}
    assert by_id["invert-blue"]["ran"] and by_id["invert-blue"]["resolved"] is True  # orange inverted is blue
    assert by_id["invert-red"]["ran"] and by_id["invert-red"]["resolved"] is False
    assert "mostly blue" in by_id["invert-red"]["verdict"]["reason"]
    assert recorded["metrics"]["judged"] == 2 and recorded["metrics"]["resolved_rate"] == 0.5
    assert "resolved 50% of 2 judged" in capsys.readouterr().out
    assert len(json.loads(cassette.read_text(encoding="utf-8"))["entries"]) == 2

    calls = openai.count("/chat/completions", "vision-ok")
    out = tmp_path / "replayed"
    assert main(["eval", str(suite), "--run", "--judge", "openai-compatible", "--replay", str(cassette),
                 "--out", str(out)]) == 0
    replayed = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    assert [c["resolved"] for c in replayed["cases"]] == [c["resolved"] for c in recorded["cases"]]
    assert openai.count("/chat/completions", "vision-ok") == calls  # the judge was not asked again


def test_judge_without_run_is_refused(tmp_path, capsys):
    suite = tmp_path / "judged.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    assert main(["eval", str(suite), "--judge", "openai-compatible", "--out", str(tmp_path / "o")]) == 2
    assert "--judge needs --run" in capsys.readouterr().err
