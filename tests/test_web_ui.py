"""The web UI: ComfyUI's own frontend served by `nodeweaver serve`, the endpoints it calls, and NodeWeaver's
Describe panel driven in headless Chromium (Debian's /usr/bin/chromium through playwright) — words in, the
planned graph on the canvas, Run through the frontend's queue, an image in the queue."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO, free_port, run_cli
from fastapi.testclient import TestClient

from mcp_server import ui_app
from mcp_server.http_app import create_app
from mcp_server.service import NodeWeaverService
from runtime.settings import load_settings

CHROMIUM = Path("/usr/bin/chromium")
SCREENS = Path("/tmp/nw/screens")  # a copy of each run's screenshots, for people to look at


@pytest.fixture
def client(isolated_folders):
    service = NodeWeaverService(settings=load_settings({"data_dir": isolated_folders / "data"}),
                                start_worker=False)
    with TestClient(create_app(service, mount_mcp=False), base_url="http://127.0.0.1") as http:
        yield http
    service.close()


# ---- the endpoints, as the page calls them ----------------------------------------------------------------
def test_comfyui_routes_answer_under_api_too(client):
    assert client.get("/api/object_info").json() == client.get("/object_info").json()
    assert client.get("/api/queue").json() == {"queue_running": [], "queue_pending": []}
    assert client.get("/api/history").json() == {}
    assert client.get("/api/system_stats").json()["devices"]
    refused = client.post("/api/prompt", json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}})
    assert refused.status_code == 400 and refused.json()["node_errors"]
    with client.websocket_connect("ws://127.0.0.1/api/ws?clientId=abc") as ws:
        assert ws.receive_json()["data"]["sid"] == "abc"


def test_settings_round_trip_with_defaults_for_a_new_user(client):
    first = client.get("/api/settings").json()
    assert first["Comfy.Notification.ShowVersionUpdates"] is False
    assert client.post("/api/settings/Comfy.Locale", json="zh").status_code == 200
    assert client.post("/api/settings", json={"Comfy.ColorPalette": "light"}).status_code == 200
    assert client.get("/api/settings/Comfy.Locale").json() == "zh"
    saved = client.get("/settings").json()
    assert saved["Comfy.ColorPalette"] == "light" and saved["Comfy.Locale"] == "zh"
    assert client.post("/api/settings", json=[1, 2]).json()["error"]["type"] == "bad_request"


def test_userdata_files_save_list_move_delete_and_stay_inside(client):
    saved = client.post("/api/userdata/workflows%2Fcat.json?full_info=true", content=b'{"nodes": []}')
    assert saved.status_code == 200 and saved.json()["path"] == "workflows/cat.json"
    assert client.post("/api/userdata/workflows%2Fcat.json?overwrite=false", content=b"{}").status_code == 409
    listed = client.get("/api/userdata", params={"dir": "workflows", "recurse": "true", "full_info": "true"}).json()
    assert [f["path"] for f in listed] == ["cat.json"] and listed[0]["size"] == 13
    assert client.get("/api/userdata/workflows%2Fcat.json").content == b'{"nodes": []}'
    moved = client.post("/api/userdata/workflows%2Fcat.json/move/workflows%2Fdog.json")
    assert moved.status_code == 200 and moved.json() == "workflows/dog.json"
    assert client.get("/api/userdata", params={"dir": "workflows"}).json() == ["dog.json"]
    assert client.delete("/api/userdata/workflows%2Fdog.json").status_code == 204
    assert client.get("/api/userdata/workflows%2Fdog.json").status_code == 404
    assert client.get("/api/userdata", params={"dir": "subgraphs"}).json() == []
    escape = client.post("/api/userdata/..%2F..%2Fescaped.txt", content=b"x")
    assert escape.status_code == 403 and escape.json()["error"]["type"] == "forbidden_path"
    assert client.get("/api/userdata/user.css").headers["content-type"].startswith("text/css")
    assert client.get("/api/userdata/comfy.templates.json").json() == []
    assert client.get("/api/users").json() == {"storage": "server", "migrated": True}


def test_extensions_models_and_features(client, isolated_folders):
    (isolated_folders / "models" / "checkpoints").mkdir()
    (isolated_folders / "models" / "checkpoints" / "tiny.safetensors").write_bytes(b"x")
    listed = client.get("/api/extensions").json()
    assert "/extensions/nodeweaver/nodeweaver_describe.js" in listed
    script = client.get("/extensions/nodeweaver/nodeweaver_describe.js")
    assert script.status_code == 200 and "registerSidebarTab" in script.text
    assert client.get("/api/models/checkpoints").json() == ["tiny.safetensors"]
    folders = {f["name"]: f for f in client.get("/api/experiment/models").json()}
    assert str(isolated_folders / "models" / "checkpoints") in folders["checkpoints"]["folders"]
    assert client.get("/api/experiment/models/checkpoints").json() == [{"name": "tiny.safetensors",
                                                                       "pathIndex": 0}]
    assert client.get("/api/experiment/models/nonsense").status_code == 404
    assert client.get("/api/embeddings").json() == []
    assert client.get("/api/i18n").json() == {}
    assert client.get("/api/workflow_templates").json() == {}
    assert client.get("/api/features").json()["max_upload_size"] > 0


def test_the_template_library_is_served_with_drawn_thumbnails(client):
    if ui_app.templates_dir() is None:
        pytest.skip("comfyui-workflow-templates-json is not installed")
    groups = client.get("/templates/index.json").json()
    first = groups[0]["templates"][0]
    workflow = client.get(f"/templates/{first['name']}.json").json()
    assert workflow["nodes"]
    thumb = client.get(f"/templates/{first['name']}-1.{first['mediaSubtype']}")
    assert thumb.headers["content-type"] == "image/svg+xml" and "<svg" in thumb.text
    assert client.get("/templates/no_such_template-1.webp").status_code == 404
    assert client.get("/templates/..%2F..%2F__init__.py").status_code in (403, 404)


def test_the_page_or_how_to_install_it(client, monkeypatch):
    page = client.get("/")
    if ui_app.frontend_dir() is None:
        assert "pip install" in page.text and "nodeweaver[ui]" in page.text
    else:
        assert '<div id="vue-app">' in page.text and page.headers["cache-control"] == "no-cache"
        assert client.get("/scripts/app.js").status_code == 200
    monkeypatch.setattr(ui_app, "frontend_dir", lambda: None)
    bare = TestClient(create_app(client.app.state.service, mount_mcp=False), base_url="http://127.0.0.1")
    assert "pip install 'nodeweaver[ui]'" in bare.get("/").text
    assert bare.get("/api/queue").status_code == 200


# ---- the page in a real browser ---------------------------------------------------------------------------
def _browser_ready() -> str | None:
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    if ui_app.frontend_dir() is None:
        return "the frontend is not installed (pip install 'nodeweaver[ui]')"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'nodeweaver[dev]')"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "running the planned graph needs the diffusion extra (torch)"
    return None


@pytest.fixture
def served(isolated_folders):
    """A real `nodeweaver serve` with the demo checkpoint installed in the test's models folder."""
    made = run_cli("demo-checkpoint")
    assert made.returncode == 0, made.stderr
    port = free_port()
    log = (isolated_folders / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "nodeweaver.cli", "serve", "--port", str(port)], cwd=REPO,
                            env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/system_stats", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, (isolated_folders / "serve.log").read_text()
                assert time.monotonic() < deadline, "nodeweaver serve did not start within 90 s"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a websocket the browser left open can hold the shutdown
            proc.kill()
            proc.wait(timeout=15)
        log.close()


class _Console:
    """Everything the page reports as wrong: console errors, uncaught exceptions, failed requests."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text} {m.location}"))
        page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"http {r.status}: {r.url}"))


def _node_classes(page) -> list[str]:
    return page.evaluate("(window.app.graph.nodes ?? window.app.graph._nodes).map((n) => n.type)")


@pytest.mark.slow
@pytest.mark.skipif(_browser_ready() is not None, reason=str(_browser_ready()))
def test_describe_plan_and_run_in_the_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    shots: list[Path] = []

    def shot(page, name: str) -> None:
        shots.append(tmp_path / f"{len(shots) + 1}-{name}.png")
        page.screenshot(path=str(shots[-1]))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            console = _Console(page)
            page.goto(served + "/")
            page.wait_for_function("window.app?.graph && window.app.extensionManager", timeout=90_000)
            page.wait_for_selector(".nodeweaver-describe-tab-button", timeout=30_000)
            page.wait_for_timeout(2000)  # late requests (settings, templates, models) land
            shot(page, "loaded-with-template-browser")
            assert console.problems == []
            # a new user gets the template browser at once: it lists the library, thumbnails drawn
            titles = [t["title"] for t in httpx.get(served + "/templates/index.json").json()[0]["templates"][:3]]
            for title in titles:
                page.get_by_text(title, exact=True).first.wait_for(timeout=30_000)
            page.keyboard.press("Escape")
            page.wait_for_selector(".p-dialog-mask", state="detached", timeout=10_000)

            page.click(".nodeweaver-describe-tab-button")
            page.fill(".nw-request", "一只猫坐在沙发上, a cat on a sofa")
            shot(page, "describe-typed")
            page.click(".nw-plan")
            page.wait_for_function("document.querySelector('.nw-status')?.textContent.startsWith('valid')",
                                   timeout=120_000)
            classes = _node_classes(page)
            assert {"CheckpointLoaderSimple", "KSampler", "SaveImage"} <= set(classes), classes
            shot(page, "planned-graph")

            page.click(".nw-run")
            page.click(".queue-tab-button")
            page.wait_for_selector("img[src*='/view']", timeout=180_000)
            shot(page, "image-in-queue")
            history = httpx.get(served + "/api/history", timeout=10).json()
            images = [img for item in history.values() for out in item["outputs"].values()
                      for img in out.get("images", [])]
            assert images and images[0]["filename"].endswith(".png")
            assert console.problems == []
        finally:
            if browser.contexts and browser.contexts[0].pages:
                shot(browser.contexts[0].pages[0], "last")
            browser.close()
            SCREENS.mkdir(parents=True, exist_ok=True)
            for path in shots:
                shutil.copy(path, SCREENS / path.name)
