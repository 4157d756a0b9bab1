"""Shared fixtures: isolated folders, registries, and the paths of ../shared."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests: the default profile is derandomized (the same examples every run, so the README's test
# command cannot fail one time in three); `HYPOTHESIS_PROFILE=explore` searches new examples, many more of them.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("NODEWEAVER_SHARED", REPO.parent / "shared"))
CATALOG = SHARED / "fixtures" / "comfyui_object_info.json"


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path_factory, monkeypatch):
    """Every test gets its own data, models, input and output folders and no user config."""
    root = tmp_path_factory.mktemp("nw")
    for name in ("models", "input", "output", "data"):
        (root / name).mkdir()
    monkeypatch.setenv("NODEWEAVER_MODELS_DIR", str(root / "models"))
    monkeypatch.setenv("NODEWEAVER_INPUT_DIR", str(root / "input"))
    monkeypatch.setenv("NODEWEAVER_OUTPUT_DIR", str(root / "output"))
    monkeypatch.setenv("NODEWEAVER_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("NODEWEAVER_CONFIG", str(root / "no-config.toml"))
    monkeypatch.delenv("NODEWEAVER_CUSTOM_NODES", raising=False)
    yield root
    from runtime.settings import activate

    activate(None)  # a test that ran an entry point in-process leaves no settings behind


@pytest.fixture
def registry():
    from nodes.registry import NodeRegistry

    reg = NodeRegistry()
    reg.load_builtin_packs()
    return reg


@pytest.fixture
def reg(registry):
    """The built-in packs plus our test node packs (tests/data/test_nodes), which must all load."""
    registry.load_custom_nodes([DATA / "test_nodes"])
    assert not registry.load_errors
    return registry


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """One running NodeWeaverService per test module, its job history in a folder of its own."""
    from mcp_server.service import NodeWeaverService
    from runtime.settings import load_settings

    svc = NodeWeaverService(settings=load_settings({"data_dir": tmp_path_factory.mktemp("svc")}))
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def server(service):
    """That service's HTTP app (MCP included) on a real uvicorn server."""
    from mcp_server.http_app import create_app

    with ServerThread(create_app(service)) as running:
        yield running


def shared_catalog() -> Path:
    """The shared ComfyUI 0.3.64 catalog's path; the calling test is skipped, with the reason, when ../shared
    is not beside the checkout (CI on a bare clone)."""
    if not CATALOG.is_file():
        pytest.skip(f"the shared ComfyUI catalog is not at {CATALOG} (set NODEWEAVER_SHARED)")
    return CATALOG


@pytest.fixture(scope="session")
def catalog_data() -> dict:
    return json.loads(shared_catalog().read_text(encoding="utf-8"))


@pytest.fixture
def catalog_registry(registry, catalog_data):
    registry.import_catalog(catalog_data, source="comfyui_object_info.json")
    return registry


def run_cli(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `nodeweaver` command the way a user does."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "nodeweaver.cli", *args], input=stdin, capture_output=True,
                          text=True, env=full_env, cwd=REPO, timeout=120)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """An ASGI app on a real uvicorn server in a thread, for tests that need real connections and timing."""

    def __init__(self, app, port: int | None = None) -> None:
        import uvicorn

        port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

