"""The ComfyUI backend against the recorded stand-in (real HTTP and websocket): jobs queued through
JobQueue run remotely, their events arrive with NodeWeaver's job id, outputs land in our output folder,
remote refusals are structured errors, interrupts reach the remote queue, a dying server fails the job."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from compiler.plan import Plan
from engine.comfyui import (
    BackendUnavailable,
    ComfyUIBackend,
    ComfyUIClient,
    RemoteError,
    RemoteValidationError,
)
from engine.comfyui.backend import local_name
from engine.jobs import JobQueue
from runtime import folders
from tests.conftest import free_port
from tests.fakes.comfyui_standin import ComfyUIStandin

RECORDED = Path(__file__).resolve().parent / "data" / "comfyui_recorded"
pytestmark = pytest.mark.slow  # every test here starts stand-in servers


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


@pytest.fixture
def remote_registry(registry, isolated_folders):
    """Our registry with the stand-in's catalog (as part 2 imports a server's), and the run's input image."""
    registry.import_catalog(recorded("object_info.json"), source="comfyui:standin", remote=True)
    from PIL import Image

    image = Image.new("RGB", (32, 32))
    image.save(isolated_folders / "input" / "small.png")
    return registry


@pytest.fixture
def standin():
    with ComfyUIStandin() as server:
        yield server


class Harness:
    """A backend over some stand-ins, a started JobQueue on it, and every event it emitted."""

    def __init__(self, registry, tmp_path: Path, urls: list[str], node_timeout: float | None = None,
                 **options) -> None:
        headers = options.pop("headers", None)
        self.backend = ComfyUIBackend([ComfyUIClient(url, timeout=10, headers=headers) for url in urls], **options)
        self.events: list = []
        self.seen = threading.Condition()
        self.backend.bus.subscribe(self._note)
        self.queue = JobQueue(registry, tmp_path / "jobs.db", executor=self.backend, node_timeout=node_timeout)
        self.queue.start()

    def _note(self, event) -> None:
        with self.seen:
            self.events.append(event)
            self.seen.notify_all()

    def wait_for(self, event_type: str, timeout: float = 20.0) -> None:
        with self.seen:
            assert self.seen.wait_for(lambda: any(e.type == event_type for e in self.events), timeout), event_type

    def run(self, prompt: dict, timeout: float = 30.0):
        job = self.queue.submit(prompt)
        return self.queue.wait(job.id, timeout=timeout)

    def close(self) -> None:
        self.queue.close()
        self.backend.shutdown(wait=2.0)


@pytest.fixture
def harness(remote_registry, tmp_path):
    made: list[Harness] = []

    def make(urls: list[str], **options) -> Harness:
        made.append(Harness(remote_registry, tmp_path / str(len(made)), urls, **options))
        return made[-1]

    yield make
    for h in made:
        h.close()


def test_a_run_reports_with_our_job_id_and_its_png_lands_in_our_output_folder(standin, harness):
    h = harness([standin.url])
    job = h.run(recorded("run_success.json")["prompt"])
    assert job.status == "success", job.error
    mine = [e for e in h.events if e.data.get("prompt_id") == job.id]
    types = [e.type for e in mine]
    for name in ("execution_start", "execution_cached", "executing", "progress", "executed", "execution_success"):
        assert name in types
    assert types.index("execution_start") < types.index("progress") < types.index("execution_success")
    assert all(e.data.get("prompt_id") == job.id for e in h.events)  # never the remote prompt id
    assert next(e for e in mine if e.type == "execution_cached").data["nodes"] == ["1", "2"]
    progress = next(e for e in mine if e.type == "progress")
    assert (progress.data["node"], progress.data["value"], progress.data["max"]) == ("4", 1, 1)
    image = job.outputs["6"]["images"][0]
    assert image["type"] == "output" and image["filename"].startswith("NWRecord_")
    saved = folders.output_dir() / image["subfolder"] / image["filename"]
    assert saved.read_bytes() == (RECORDED / "view_output.png").read_bytes()
    executed = next(e for e in mine if e.type == "executed")
    assert executed.data["output"] == job.outputs["6"]  # the ui output names our file, not the remote one
    assert job.cached == ["1", "2"] and job.executed == ["3", "4", "5", "6"]
    assert set(job.timings) == {"3", "4", "5", "6"} and all(t >= 0 for t in job.timings.values())
    body = standin.submitted[0]
    assert body["client_id"] == h.backend.client_id and body["prompt_id"] != job.id
    assert set(body["prompt"]) == {"1", "2", "3", "4", "5", "6"}


def test_a_node_failing_remotely_fails_the_job_with_the_servers_error(standin, harness):
    h = harness([standin.url])
    job = h.run(recorded("run_error.json")["prompt"])
    assert job.status == "error"
    assert job.error["node_id"] == "2" and job.error["node_type"] == "UpscaleModelLoader"
    assert job.error["exception_type"] == "safetensors._safetensors_rust.SafetensorError"
    assert job.error["prompt_id"] == job.id and job.error["remote"] == standin.url
    errors = [e for e in h.events if e.type == "execution_error"]
    assert len(errors) == 1 and errors[0].data["prompt_id"] == job.id


def test_a_refused_workflow_comes_back_as_structured_errors(standin, harness):
    invalid = recorded("prompt_400.json")["prompt"]
    with pytest.raises(RemoteValidationError) as raised:
        ComfyUIClient(standin.url).queue_prompt(invalid, client_id="me")
    err = raised.value
    assert err.kind == "remote_validation" and err.status == 400 and standin.url in str(err)
    found = {(e.node_id, e.type, e.input_name) for e in err.errors}
    assert ("2", "required_input_missing", "image") in found
    assert ("1", "custom_validation_failed", "image") in found
    assert err.to_dict()["details"]["error"]["type"] == "prompt_outputs_failed_validation"
    # through the backend: a result, not a raise, with the same errors
    backend = harness([standin.url]).backend
    result = backend.execute(Plan.model_construct(prompt=invalid, order=list(invalid), outputs=["3", "5"],
                                                  extra={}), prompt_id="job-1")
    assert result.status == "error" and result.error["exception_type"] == "RemoteValidationError"
    assert {e["node_id"] for e in result.error["errors"]} == {"1", "2", "4"}
    assert result.error["node_errors"]["2"]["class_type"] == "ImageInvert"


def test_interrupting_a_running_job_interrupts_it_on_its_server(standin, harness):
    h = harness([standin.url])
    job = h.queue.submit(recorded("run_interrupted.json")["prompt"])
    h.wait_for("progress")  # the stand-in now holds until interrupted, as the recorded run did
    assert h.queue.cancel(job.id)
    job = h.queue.wait(job.id, timeout=30)
    assert job.status == "interrupted"
    assert job.error["node_id"] == "4" and job.error["exception_type"] == "InterruptedExecution"
    assert standin.interrupts == [standin.submitted[0]["prompt_id"]]
    ended = [e for e in h.events if e.type == "execution_interrupted"]
    assert len(ended) == 1 and ended[0].data["prompt_id"] == job.id


def test_interrupting_a_job_still_queued_remotely_deletes_it_there(standin, harness):
    h = harness([standin.url])
    standin.occupy()  # someone else's prompt runs there
    job = h.queue.submit(recorded("run_success.json")["prompt"])
    client = ComfyUIClient(standin.url)
    for _ in range(200):
        if client.queue()["queue_pending"]:
            break
        threading.Event().wait(0.05)
    remote_id = client.queue()["queue_pending"][0][1]
    h.queue.cancel(job.id)
    job = h.queue.wait(job.id, timeout=30)
    assert job.status == "interrupted"
    assert standin.deleted == [remote_id] and client.queue()["queue_pending"] == []
    standin.release()


def test_a_server_dying_mid_job_fails_the_job_with_backend_unavailable(harness):
    with ComfyUIStandin(die_at="progress") as dying:
        h = harness([dying.url], unavailable_after=1.0, poll=0.2)
        job = h.run(recorded("run_success.json")["prompt"], timeout=60)
    assert job.status == "error", job.status
    assert job.error["exception_type"] == "BackendUnavailable"
    assert dying.url in job.error["exception_message"] and "went away" in job.error["exception_message"]
    assert [e.type for e in h.events if e.type.startswith("execution_")][-1] == "execution_error"


def test_messages_lost_to_a_reconnect_are_made_up_for_from_history(harness):
    with ComfyUIStandin(cut_at="execution_start") as cutting:  # the socket drops before the run starts
        h = harness([cutting.url], poll=0.2)
        job = h.run(recorded("run_success.json")["prompt"])
        history_reads = sum(n for call, n in cutting.calls.items() if call.startswith("GET /history/"))
    assert job.status == "success", job.error
    assert history_reads >= 1
    image = job.outputs["6"]["images"][0]
    assert (folders.output_dir() / image["filename"]).read_bytes() == (RECORDED / "view_output.png").read_bytes()
    mine = [e.type for e in h.events if e.data.get("prompt_id") == job.id]
    assert mine[0] == "execution_start" and "executed" in mine and mine[-2:] == ["execution_success", "executing"]


def test_a_remote_node_running_past_the_node_timeout_is_interrupted_and_fails_the_job(standin, harness):
    h = harness([standin.url], node_timeout=0.3, poll=0.1)
    job = h.run(recorded("run_interrupted.json")["prompt"])  # the stand-in holds in node 4 until interrupted
    assert job.status == "error"
    assert job.error["exception_type"] == "NodeTimeout" and job.error["node_id"] == "4"
    assert standin.interrupts == [standin.submitted[0]["prompt_id"]]


@pytest.mark.parametrize("busy", [0, 1])
def test_each_job_goes_to_the_least_loaded_server(harness, busy):
    with ComfyUIStandin(extra_load=3 if busy == 0 else 0) as first, \
            ComfyUIStandin(extra_load=3 if busy == 1 else 0) as second:
        h = harness([first.url, second.url])
        assert h.backend.slots == 2
        job = h.run(recorded("run_success.json")["prompt"])
    assert job.status == "success"
    idle, loaded = (second, first) if busy == 0 else (first, second)
    assert len(idle.submitted) == 1 and loaded.submitted == []


def test_a_server_lacking_a_node_class_is_skipped(harness):
    with ComfyUIStandin(drop_classes=("ImageUpscaleWithModel",)) as lacking, \
            ComfyUIStandin(extra_load=5) as busy:
        h = harness([lacking.url, busy.url])
        job = h.run(recorded("run_success.json")["prompt"])
        assert job.status == "success"
        assert lacking.submitted == [] and len(busy.submitted) == 1
        # no server has every class: a clear error naming what is missing where
        only_lacking = harness([lacking.url]).backend
        prompt = recorded("run_success.json")["prompt"]
        result = only_lacking.execute(Plan.model_construct(prompt=prompt, order=list(prompt), outputs=["6"],
                                                           extra={}), prompt_id="job-2")
    assert result.status == "error" and result.error["exception_type"] == "MissingNodeClasses"
    assert "ImageUpscaleWithModel" in result.error["exception_message"]


def test_refresh_reads_the_catalog_again(standin, harness):
    backend = harness([standin.url]).backend
    assert backend.refresh() == {standin.url: None}
    assert "ImageInvert" in backend.servers[0].classes
    standin.drop_classes.add("ImageInvert")
    assert backend.refresh() == {standin.url: None}
    assert "ImageInvert" not in backend.servers[0].classes
    assert standin.calls["GET /object_info"] == 2


def test_an_unreachable_server_is_a_503_naming_its_url_never_a_hang(harness):
    url = f"http://127.0.0.1:{free_port()}"
    client = ComfyUIClient(url, timeout=3)
    for call in (client.object_info, client.system_stats, client.queue_remaining, lambda: client.models()):
        with pytest.raises(BackendUnavailable) as raised:
            call()
        assert raised.value.status == 503 and raised.value.kind == "backend_unavailable"
        assert url in str(raised.value) and raised.value.details["url"] == url
    h = harness([url])
    job = h.run(recorded("run_success.json")["prompt"])
    assert job.status == "error" and job.error["exception_type"] == "BackendUnavailable"
    assert url in job.error["exception_message"]


def test_the_event_stream_reconnects_after_the_server_comes_back():
    port = free_port()
    first = ComfyUIStandin(port=port).start()
    stop = threading.Event()
    greetings: list[dict] = []

    def read() -> None:
        for message in ComfyUIClient(first.url, timeout=3).events("reader", stop=stop, max_backoff=0.5):
            if message["type"] == "status" and "sid" in message["data"]:
                greetings.append(message)
                if len(greetings) == 2:
                    stop.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(200):
            if greetings:
                break
            threading.Event().wait(0.05)
        first.stop()
        with ComfyUIStandin(port=port):
            reader.join(timeout=20)
    finally:
        stop.set()
    assert [g["data"]["sid"] for g in greetings] == ["reader", "reader"]
    assert not reader.is_alive()


def test_a_header_for_a_proxy_reaches_http_and_the_websocket(harness):
    secret = ("Authorization", "Bearer 0123")
    with ComfyUIStandin(require_header=secret) as guarded:
        with pytest.raises(RemoteError) as raised:
            ComfyUIClient(guarded.url).system_stats()
        assert raised.value.details["status"] == 401
        h = harness([guarded.url], headers=dict([secret]))
        job = h.run(recorded("run_success.json")["prompt"])
    assert job.status == "success", job.error
    assert any(e.type == "progress" for e in h.events)  # events came: the websocket was let in


@pytest.mark.parametrize(("filename", "subfolder", "expected"), [
    ("NWRecord_00002_.png", "", ("NWRecord", "png")),
    ("clip_00001_.webm", "videos/day1", ("videos/day1/clip", "webm")),
    ("../../etc/passwd", "../..", ("passwd", "bin")),
    ("a b;rm -rf.PNG", "/abs/x", ("abs/x/a_b_rm_-rf", "png")),
])
def test_fetched_files_get_safe_local_names(filename, subfolder, expected):
    assert local_name(filename, subfolder) == expected
    path, _sub, _name = folders.next_output_file(*expected)
    assert folders.output_dir().resolve() in path.parents


def test_upload_image_puts_bytes_or_a_file_in_the_servers_input_folder(standin, tmp_path):
    from runtime.errors import BadRequest

    client = ComfyUIClient(standin.url, timeout=10)
    try:
        assert client.upload_image(b"\x89PNG one", "a.png") == "a.png"
        (tmp_path / "b.png").write_bytes(b"\x89PNG two")
        assert client.upload_image(tmp_path / "b.png", "masks/b.png") == "masks/b.png"
        assert standin.uploads == {"a.png": b"\x89PNG one", "masks/b.png": b"\x89PNG two"}
        assert standin.upload_forms[1] == {"type": "input", "subfolder": "masks", "overwrite": "true"}
        assert "a.png" in client.object_info()["LoadImage"]["input"]["required"]["image"][0]
        for name in ("../x.png", "/etc/x.png", ""):
            with pytest.raises(BadRequest, match="relative file name"):
                client.upload_image(b"x", name)
        with pytest.raises(BadRequest, match="cannot read"):
            client.upload_image(tmp_path / "none.png", "none.png")
        assert len(standin.uploads) == 2
    finally:
        client.close()
