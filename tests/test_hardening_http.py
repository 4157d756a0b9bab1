"""The HTTP face under hostile input: no body gives a 5xx, replies are strict JSON, a slow request never
stalls the others, uploads stay inside their folder, CORS works for configured origins only, /docs works
offline. Clients as users run them: TestClient, and real uvicorn servers for timing and connections."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import ServerThread
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_server.http_app import create_app
from mcp_server.service import NodeWeaverService

BASE = "http://127.0.0.1:8188"  # the Host a loopback server accepts
TEXT_WF = {"1": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
           "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "world",
                                                               "delimiter": ", "}},
           "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def _strict(text: str):
    """Parse as strict JSON (RFC 8259): NaN/Infinity are refused; lone surrogates cannot be in UTF-8 text."""
    def refuse(token):
        raise AssertionError(f"reply holds {token}, which is not JSON")

    return json.loads(text, parse_constant=refuse)


def _q(value: str) -> str:
    """Percent-encoded as a client would send it; lone surrogates become bytes that are not UTF-8."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _plain(value: str) -> str:
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _nest(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _deep_source(depth: int) -> str:
    return '{"prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": ' + _nest(depth) + "}}}}"


@pytest.fixture
def service():
    svc = NodeWeaverService(start_worker=False)
    yield svc
    svc.close()


@pytest.fixture
def client(service):
    with TestClient(create_app(service, mount_mcp=False), base_url=BASE, raise_server_exceptions=False) as http:
        yield http


def _post(http: TestClient, path: str, body: bytes | str, content_type: str = "application/json"):
    return http.post(path, content=body.encode() if isinstance(body, str) else body,
                     headers={"Content-Type": content_type})


# ---- the cases, one by one ----------------------------------------------------------------------
INVALID_WITH_NUMBERS = '{"prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": NaN, "x": 1e400}},' \
                       ' "2": {"class_type": "NoSuchNode", "inputs": {"a": Infinity, "b": -Infinity}}}}'
LISTED = {
    "nan_inf_in_invalid_workflow": ("/prompt", INVALID_WITH_NUMBERS, {400}),
    "nan_in_validate": ("/api/validate", INVALID_WITH_NUMBERS.replace('"prompt"', '"workflow"'), {200}),
    "surrogate_class_type": ("/prompt", '{"prompt": {"1": {"class_type": "\\ud800", "inputs": {}}}}', {400}),
    "surrogate_input": ("/prompt", '{"prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": '
                                   '"\\udfff"}}}}', {200, 400}),
    "surrogate_key": ("/api/validate", '{"\\ud800": {"class_type": "PreviewAny", "inputs": {}}}', {200, 400}),
    "deep_inputs_500": ("/prompt", _deep_source(500), {400}),
    "deep_inputs_990": ("/prompt", _deep_source(990), {400}),
    "deep_meta": ("/prompt", '{"prompt": {"1": {"class_type": "PreviewAny", "inputs": {}, "_meta": '
                             + _nest(990, '{"a": 1}') + "}}}", {400}),
    "deep_extra_data": ("/prompt", '{"prompt": {"1": {"class_type": "PreviewAny", "inputs": {}}}, '
                                   '"extra_data": {"x": ' + _nest(700) + "}}", {400}),
    "deep_prompt_string": ("/prompt", json.dumps({"prompt": _nest(995)}), {400}),
    "deep_object_prompt_string": ("/prompt", json.dumps({"prompt": '{"a":' * 995 + "1" + "}" * 995}), {400}),
    "unary_minus_text_form": ("/prompt", json.dumps({"prompt": "n1 = PrimitiveInt(value=" + "-" * 990 + "1)\n"
                                                               "n2 = PreviewAny(source=n1)\n"}), {200, 400}),
    "queue_delete_number": ("/queue", '{"delete": 5}', {400}),
    "history_delete_number": ("/history", '{"delete": 5}', {400}),
    "queue_clear_string": ("/queue", '{"clear": "yes"}', {400}),
    "history_delete_mixed": ("/history", '{"delete": ["a", 5, null]}', {400}),
    "history_delete_surrogate": ("/history", '{"delete": ["\\ud800"]}', {200}),
    "queue_body_list": ("/queue", "[1, 2]", {400}),
    "not_json": ("/prompt", "{nope", {422}),
    "not_utf8": ("/prompt", b'{"prompt": "\xff\xfe"}', {422}),
    "huge_integer": ("/prompt", '{"prompt": {"1": {"class_type": "PrimitiveInt", "inputs": {"value": %s}}}}'
                     % ("9" * 5000), {400, 422}),
    "empty_body": ("/prompt", "", {422}),
}


@pytest.mark.parametrize("case", sorted(LISTED))
def test_listed_bodies_get_a_clear_4xx_in_strict_json(client, case):
    path, body, expected = LISTED[case]
    answer = _post(client, path, body)
    assert answer.status_code in expected, answer.text[:300]
    parsed = _strict(answer.text)
    if answer.status_code >= 400:
        assert parsed["error"]["type"] and "Traceback" not in answer.text
    assert client.get("/system_stats").status_code == 200


def test_depth_errors_say_what_is_wrong(client):
    answer = _post(client, "/prompt", _deep_source(300))
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "too_deep"
    assert "256" in answer.json()["error"]["message"]
    shallow = _post(client, "/prompt", _deep_source(200))
    assert shallow.status_code == 400 and shallow.json()["error"]["type"] != "too_deep"  # judged as a workflow


def test_nan_in_an_invalid_workflow_comes_back_as_null(client):
    body = '{"prompt": {"1": {"class_type": "PrimitiveFloat", "inputs": {"value": NaN}}, ' \
           '"2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}}'
    answer = _post(client, "/prompt", body)
    assert answer.status_code == 400
    assert "NaN" not in answer.text.replace('"NaN"', "")  # only ever inside a string
    _strict(answer.text)


def test_history_and_queue_stay_readable_after_odd_text_was_stored(client):
    odd = json.dumps({"prompt": TEXT_WF, "client_id": "\ud800", "extra_data": {"note": "\udfff", "x": 1e308 * 10}})
    queued = _post(client, "/prompt", odd)
    assert queued.status_code in (200, 400)
    for path in ("/queue", "/history", "/prompt"):
        answer = client.get(path)
        assert answer.status_code == 200
        _strict(answer.text)


@pytest.mark.parametrize(("query", "status"), [
    ({"max_items": "99999999999999999999"}, 200), ({"max_items": "abc"}, 400), ({"max_items": "-1"}, 400),
    ({"offset": "1.5"}, 400), ({"max_items": "2", "offset": "99999999999999999999"}, 200),
    ({"max_items": "", "offset": ""}, 200), ({"max_items": "\ud800"}, 400)])
def test_history_query_parameters(client, query, status):
    answer = client.get("/history?" + "&".join(f"{k}={_q(v)}" for k, v in query.items()))
    assert answer.status_code == status, answer.text
    _strict(answer.text)


def test_history_max_items_and_offset_like_comfyui(isolated_folders):
    svc = NodeWeaverService()
    try:
        ids = []
        for word in ("a", "b", "c", "d"):
            workflow = json.loads(json.dumps(TEXT_WF))
            workflow["1"]["inputs"]["value"] = word
            ids.append(svc.run(workflow, timeout=60).id)
        with TestClient(create_app(svc, mount_mcp=False), base_url=BASE) as http:
            assert list(http.get("/history").json()) == ids  # oldest first, as ComfyUI
            assert list(http.get("/history", params={"max_items": 2}).json()) == ids[2:]
            assert list(http.get("/history", params={"max_items": 2, "offset": 1}).json()) == ids[1:3]
            assert list(http.get("/history", params={"offset": 3}).json()) == ids[3:]
            assert http.get("/history", params={"max_items": 0}).json() == {}
            assert http.post("/history", json={"delete": [ids[0]]}).status_code == 200
            assert list(http.get("/history").json()) == ids[1:]
            assert http.post("/history", json={"clear": True}).status_code == 200
            assert http.get("/history").json() == {}
    finally:
        svc.close()


def test_history_delete_and_clear_never_drop_queued_work(client, service):
    """ComfyUI's /history delete and clear act on history only: a queued prompt stays queued."""
    queued = client.post("/prompt", json={"prompt": TEXT_WF}).json()["prompt_id"]
    assert client.post("/history", json={"delete": [queued]}).status_code == 200
    assert client.post("/history", json={"clear": True}).status_code == 200
    assert [item[1] for item in client.get("/queue").json()["queue_pending"]] == [queued]
    assert service.get_job(queued).status == "queued"


def test_prompt_posted_without_a_json_content_type_is_read_as_json(client, service):
    for content_type in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded"):
        answer = _post(client, "/prompt", json.dumps({"prompt": TEXT_WF, "client_id": "plain"}), content_type)
        assert answer.status_code == 200, answer.text
        assert service.get_job(answer.json()["prompt_id"]).client_id == "plain"


def test_bodies_over_the_limit_get_413(service):
    app = create_app(service, mount_mcp=False, max_body_bytes=4096)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as http:
        big = json.dumps({"prompt": {"1": {"class_type": "PreviewAny", "inputs": {"source": "x" * 5000}}}})
        answer = _post(http, "/prompt", big)
        assert answer.status_code == 413 and answer.json()["error"]["type"] == "too_large"
        chunked = http.post("/prompt", content=iter([b'{"prompt": "', b"x" * 3000, b"x" * 3000, b'"}']))
        assert chunked.status_code == 413
        upload = http.post("/upload/image", files={"image": ("big.png", b"\0" * 8000)})
        assert upload.status_code == 413
        assert not any((Path(os.environ["NODEWEAVER_INPUT_DIR"])).iterdir())
        assert http.post("/prompt", json={"prompt": TEXT_WF}).status_code == 200  # small ones still pass


def test_an_over_long_plan_request_is_refused(client, service):
    too_long = "x" * (service.settings.server.max_plan_chars + 1)
    answer = client.post("/api/plan", json={"request": too_long})
    error = answer.json()["error"]
    assert answer.status_code == 413 and error["type"] == "request_too_large"
    assert "20,001 characters" in error["message"] and error["details"]["limit"] == len(too_long) - 1


def test_bad_parameters_and_unknown_routes_are_structured(client):
    missing = client.get("/view")
    assert missing.status_code == 422 and missing.json()["error"]["type"] == "invalid_request"
    assert client.get("/no/such/route").json()["error"]["type"] == "not_found"
    long_name = client.get("/view", params={"filename": "a" * 5000, "type": "input"})
    assert long_name.status_code in (400, 404) and long_name.json()["error"]["type"]


# ---- fuzzing -----------------------------------------------------------------------------------------
TEXT = st.text(st.characters(categories=["L", "N", "P", "S", "Zs", "Cc", "Cs"]), max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | TEXT
           | st.sampled_from(["photo.png", "../x", "", "KSampler", "1"]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=16)
NODE_ID = st.sampled_from(["1", "2", "3"]) | TEXT
LINK = st.tuples(NODE_ID, st.integers(-2, 3) | TEXT).map(list)
NODE = st.fixed_dictionaries(
    {"class_type": st.sampled_from(["PreviewAny", "PrimitiveString", "StringConcatenate", "LoadImage",
                                    "SaveImage", "KSampler"]) | JSON,
     "inputs": st.dictionaries(st.sampled_from(["value", "source", "string_a", "image", "seed"]) | TEXT,
                               LINK | JSON, max_size=4) | JSON},
    optional={"_meta": JSON})
WORKFLOW = st.dictionaries(NODE_ID, NODE | JSON, max_size=4)
PROMPT_BODY = st.fixed_dictionaries({"prompt": WORKFLOW | JSON | TEXT},
                                    optional={"client_id": JSON, "extra_data": JSON, "front": JSON,
                                              "number": JSON}) | JSON
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def _assert_answered(http: TestClient, answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.headers.get("content-type", "").startswith("application/json"):
        _strict(answer.text)


@FUZZ
@given(body=PROMPT_BODY, path=st.sampled_from(["/prompt", "/api/validate"]))
def test_fuzzed_prompt_bodies_never_get_a_5xx(client, body, path):
    _assert_answered(client, _post(client, path, json.dumps(body)))


@FUZZ
@given(body=JSON, path=st.sampled_from(["/queue", "/history", "/api/tools", "/api/tools/nothing", "/api/plan"]))
def test_fuzzed_bodies_on_other_endpoints_never_get_a_5xx(client, body, path):
    _assert_answered(client, _post(client, path, json.dumps(body)))


@FUZZ
@given(value=TEXT | st.integers().map(str), other=TEXT,
       route=st.sampled_from(["history", "view", "object_info", "history_item", "job", "upload"]))
def test_fuzzed_parameters_never_get_a_5xx(client, value, other, route):
    if route == "history":
        answer = client.get(f"/history?max_items={_q(value)}&offset={_q(other)}")
    elif route == "view":
        answer = client.get(f"/view?filename={_q(value)}&subfolder={_q(other)}&type=input")
    elif route == "upload":
        answer = client.post("/upload/image", files={"image": (_plain(value) or "x.png", b"data")},
                             data={"subfolder": _plain(other)})
    else:
        prefix = {"object_info": "/object_info/", "history_item": "/history/", "job": "/api/jobs/"}[route]
        answer = client.get(prefix + _q(value or "x"))
    _assert_answered(client, answer)


def test_the_server_answers_after_fuzzing(client):
    assert client.get("/system_stats").status_code == 200 and client.get("/queue").status_code == 200


# ---- uploads stay inside their folder -----------------------------------------------------------------
def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*"))


def test_upload_never_writes_through_a_dangling_symlink(client, isolated_folders):
    inputs, outside = isolated_folders / "input", isolated_folders / "outside"
    outside.mkdir()
    (inputs / "pic.png").write_bytes(b"original")
    (inputs / "pic (1).png").symlink_to(outside / "stolen.png")  # dangles: the target does not exist
    answer = client.post("/upload/image", files={"image": ("pic.png", b"new")}, data={"overwrite": "false"})
    assert answer.status_code == 200 and answer.json()["name"] == "pic (2).png"
    assert (inputs / "pic (2).png").read_bytes() == b"new" and (inputs / "pic.png").read_bytes() == b"original"
    assert _files_under(outside) == []
    replaced = client.post("/upload/image", files={"image": ("pic (1).png", b"x")}, data={"overwrite": "true"})
    assert replaced.status_code == 403 and replaced.json()["error"]["type"] == "forbidden_path"
    assert _files_under(outside) == []


def test_overwrite_replaces_a_link_inside_the_folder_not_its_target(client, isolated_folders):
    inputs = isolated_folders / "input"
    (inputs / "real.png").write_bytes(b"real")
    (inputs / "alias.png").symlink_to(inputs / "real.png")
    answer = client.post("/upload/image", files={"image": ("alias.png", b"new")}, data={"overwrite": "true"})
    assert answer.status_code == 200
    assert (inputs / "real.png").read_bytes() == b"real"
    assert not (inputs / "alias.png").is_symlink() and (inputs / "alias.png").read_bytes() == b"new"


@pytest.mark.parametrize(("name", "subfolder", "status"), [
    ("../x.png", "", 400), ("/tmp/abs.png", "", 400), ("..", "", 400), ("a\\..\\b.png", "", 400),
    ("x.png", "..", 403), ("x.png", "../outside", 403), ("x.png", "/tmp", 403), ("x.png", "ok/../../", 403),
    ("x.png", "escape", 403), ("a" * 300 + ".png", "", 400), ("x.png", "b" * 300, 400),
    ("   ", "", 400)])
def test_upload_names_cannot_leave_the_folder(client, isolated_folders, name, subfolder, status):
    outside = isolated_folders / "outside"
    outside.mkdir()
    (isolated_folders / "input" / "escape").symlink_to(outside, target_is_directory=True)
    before = _files_under(isolated_folders)
    answer = client.post("/upload/image", files={"image": (name, b"data")}, data={"subfolder": subfolder})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["type"] in ("bad_filename", "forbidden_path", "name_too_long")
    assert _files_under(isolated_folders) == before and _files_under(outside) == []


def test_upload_into_a_new_subfolder_and_the_copy_counter(client, isolated_folders):
    for expected in ("up.png", "up (1).png", "up (2).png"):
        answer = client.post("/upload/image", files={"image": ("up.png", b"d")}, data={"subfolder": "a/b"})
        assert answer.json() == {"name": expected, "subfolder": "a/b", "type": "input"}
    assert (isolated_folders / "input" / "a" / "b" / "up (2).png").read_bytes() == b"d"


# ---- CORS and origins ---------------------------------------------------------------------------------
def test_cors_for_configured_origins_and_refusal_for_others(service):
    app = create_app(service, mount_mcp=False, allowed_origins=["https://app.example"], token="tok")
    with TestClient(app, base_url=BASE) as http:
        preflight = http.options("/prompt", headers={"Origin": "https://app.example",
                                                     "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        auth = {"Authorization": "Bearer tok"}
        simple = http.get("/queue", headers={"Origin": "https://app.example", **auth})
        assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == "https://app.example"
        assert http.get("/queue", headers={"Origin": "https://app.example"}).status_code == 401
        other_port = http.post("/interrupt", headers={"Origin": "http://localhost:3000", **auth})
        assert other_port.status_code == 403 and other_port.json()["error"]["type"] == "forbidden"
        other_preflight = http.options("/interrupt", headers={"Origin": "http://localhost:3000",
                                                              "Access-Control-Request-Method": "POST"})
        assert other_preflight.status_code == 403 and "access-control-allow-origin" not in other_preflight.headers
        same = http.post("/interrupt", headers={"Origin": BASE, **auth})
        assert same.status_code == 200
        assert http.post("/interrupt", headers={"Origin": "http://127.0.0.1:9999", **auth}).status_code == 403
        assert http.post("/interrupt", headers={"Origin": "null", **auth}).status_code == 403


def test_without_configured_origins_only_the_own_origin_is_allowed(client):
    assert client.post("/interrupt", headers={"Origin": "http://localhost:3000"}).status_code == 403
    assert client.post("/interrupt", headers={"Origin": "http://localhost:8188"}).status_code == 403
    assert client.post("/interrupt", headers={"Origin": BASE}).status_code == 200
    assert client.post("/interrupt").status_code == 200  # no Origin: not a browser


# ---- /docs offline ------------------------------------------------------------------------------------
def test_docs_reference_only_local_assets_and_they_are_served(service):
    with TestClient(create_app(service, mount_mcp=False, token="tok"), base_url=BASE) as http:
        page = http.get("/docs", params={"token": "tok"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
        for asset in assets:
            assert asset.startswith("/docs-static/")
            served = http.get(asset)  # static assets need no token: a browser cannot send one for them
            assert served.status_code == 200 and len(served.content) > 100
        assert "/openapi.json?token=tok" in page.text
        schema = http.get("/openapi.json", params={"token": "tok"}).json()
        assert "prompt" in json.dumps(schema["paths"]["/prompt"]["post"]["requestBody"])


# ---- real servers: a slow request stalls nobody, a bug keeps the connection --------------------------
def _spy(service: NodeWeaverService, name: str) -> tuple[threading.Event, threading.Event]:
    """Events set when service.<name> starts and ends; the call itself is unchanged."""
    started, finished = threading.Event(), threading.Event()
    real = getattr(service, name)

    def spied(*args, **kwargs):
        started.set()
        try:
            return real(*args, **kwargs)
        finally:
            finished.set()

    setattr(service, name, spied)
    return started, finished


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method", "key"), [("/api/validate", "validate", "workflow"),
                                                     ("/prompt", "submit", "prompt")])
def test_system_stats_answers_while_a_huge_workflow_is_checked(service, path, method, key):
    huge = {str(i): {"class_type": "PreviewAny", "inputs": {}} for i in range(20_000)}  # 20,000 errors
    started, finished = _spy(service, method)
    with ServerThread(create_app(service, mount_mcp=False)) as server, httpx.Client(base_url=server.url,
                                                                              timeout=120) as http:
        assert http.get("/system_stats").status_code == 200  # first call: imports torch, when installed
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(answer=httpx.post(
            server.url + path, json={key: huge}, timeout=120)))
        worker.start()
        assert started.wait(30)
        answered_during: list[float] = []
        while not finished.is_set():
            begin = time.monotonic()
            assert http.get("/system_stats").status_code == 200
            if not finished.is_set():
                answered_during.append(time.monotonic() - begin)
        worker.join(120)
    assert answered_during, "/system_stats got no answer while the workflow was being checked"
    assert max(answered_during) < 5
    assert result["answer"].status_code in (200, 400) and len(result["answer"].content) > 1_000_000


@pytest.mark.slow
def test_a_bug_gives_a_json_500_without_internals_and_keeps_the_connection(service, caplog):
    def broken():
        raise RuntimeError("secret internals /etc/shadow")

    service.system_stats = broken
    with ServerThread(create_app(service, mount_mcp=False)) as server, \
            httpx.Client(base_url=server.url, limits=httpx.Limits(max_connections=1)) as http:
        first = http.get("/queue")
        crashed = http.get("/system_stats")
        assert crashed.status_code == 500 and crashed.json()["error"]["type"] == "internal_error"
        assert "secret" not in crashed.text and "Traceback" not in crashed.text
        after = http.get("/queue")
        assert after.status_code == 200
        socket_of = [r.extensions["network_stream"].get_extra_info("socket").getsockname()
                     for r in (first, after)]
        assert socket_of[0] == socket_of[1]  # the same keep-alive connection
    assert "secret internals" in caplog.text
