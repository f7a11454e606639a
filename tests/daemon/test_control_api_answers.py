"""The control socket's answers: one JSON error shape, sane bodies, filters, checks, pastes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.daemon.control_api import ControlRunner, create_control_app, nests_deeper_than
from bridge.daemon.control_schema import MAX_BODY_BYTES, MAX_JSON_DEPTH, REFUSALS
from tests.conftest import REPO, RunningDaemon, require_tool
from tests.control_plane_double import ControlPlaneDouble

JSON = {"Content-Type": "application/json"}
BODY_ROUTES = ["/v1/logins", "/v1/callbacks", "/v1/providers/github/allow-loopback"]


async def call(bridge: RunningDaemon, method: str, path: str, **kw: Any) -> tuple[int, Any, Any]:
    """Return status, parsed JSON and headers; an answer that is not JSON fails the test."""
    async with bridge.control.request(method, f"http://bridge{path}", **kw) as response:
        assert response.content_type == "application/json", await response.text()
        return response.status, await response.json(), response.headers


def assert_problem(body: Any, error: str) -> None:
    """The one error shape: error (a documented code) and message, both strings."""
    assert isinstance(body, dict)
    assert body["error"] == error, body
    assert body["error"] in REFUSALS
    assert isinstance(body["message"], str)
    assert body["message"]


# -- the depth of a JSON body ---------------------------------------------------------


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
async def test_a_body_nested_past_the_limit_is_422_whatever_the_route(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, path: str, opening: bytes
) -> None:
    status, body, _ = await call(bridge, "POST", path, data=opening * 1000, headers=JSON)

    assert status == 422
    assert_problem(body, "validation_error")
    assert f"deeper than {MAX_JSON_DEPTH}" in body["message"]
    assert control_plane.auth_calls == []


async def test_a_body_at_the_limit_is_judged_by_its_model(bridge: RunningDaemon) -> None:
    deep = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    raw = f'{{"provider_id": "github", "state": "s", "surprise": {deep}}}'.encode()

    status, body, _ = await call(bridge, "POST", "/v1/logins", data=raw, headers=JSON)

    assert status == 422
    assert_problem(body, "validation_error")
    assert body["detail"][0]["loc"] == ["surprise"]


async def test_the_issues_curl_of_a_kilobyte_of_brackets_is_answered_in_shape(
    bridge: RunningDaemon,
) -> None:
    """printf '%*s' 1000 '' | tr ' ' '[' | curl --unix-socket S -X POST .../v1/logins
    --data-binary @- answered 500 (json.loads' recursion)."""
    curl = require_tool("curl", "curl")
    answers = []
    for extra in ([], ["-H", "Content-Type: application/json"]):
        process = await asyncio.create_subprocess_exec(
            curl,
            "-sS",
            "--unix-socket",
            str(bridge.paths.control_socket),
            "-X",
            "POST",
            "http://bridge/v1/logins",
            *extra,
            "--data-binary",
            "@-",
            "-w",
            "\n%{http_code} %{content_type}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(b"[" * 1000)
        text, _, status = out.decode().rpartition("\n")
        answers.append((status, json.loads(text)["error"]))

    # curl's -d names its body a form: refused as such, then as too deep once it is JSON.
    assert answers == [
        ("422 application/json; charset=utf-8", "unsupported_media_type"),
        ("422 application/json; charset=utf-8", "validation_error"),
    ]


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    return 0


@settings(max_examples=150, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ ab'),
        lambda children: st.lists(children) | st.dictionaries(st.text('[{"}]\\'), children),
        max_leaves=30,
    ),
    limit=st.integers(0, 12),
)
def test_nesting_is_counted_as_a_parser_would(value: Any, limit: int) -> None:
    # Brackets and quotes inside strings, escaped or not, count for nothing.
    assert nests_deeper_than(json.dumps(value).encode(), limit) == (depth(value) > limit)


def test_a_mebibyte_of_shallow_brackets_is_counted_whole() -> None:
    shallow = b"[" + b"[]," * (MAX_BODY_BYTES // 3 - 1) + b"[]]"
    deep_at_the_end = shallow[:-1] + b"," + b"[" * 40 + b"]" * 40 + b"]"

    assert not nests_deeper_than(shallow, MAX_JSON_DEPTH)
    assert nests_deeper_than(deep_at_the_end, MAX_JSON_DEPTH)


# -- the media type ---------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
async def test_a_body_not_sent_as_json_is_422(
    bridge: RunningDaemon, content_type: str | None
) -> None:
    raw = json.dumps({"provider_id": "github", "state": "st-media"}).encode()
    headers = {} if content_type is None else {"Content-Type": content_type}
    if content_type is None:
        headers["Content-Type"] = ""  # aiohttp would name bytes application/octet-stream

    for path in BODY_ROUTES:
        status, body, _ = await call(bridge, "POST", path, data=raw, headers=headers)
        assert status == 422, (path, body)
        assert_problem(body, "unsupported_media_type")
    assert bridge.services.logins.store.pending_count == 0


async def test_json_with_a_charset_is_json(bridge: RunningDaemon) -> None:
    raw = json.dumps({"provider_id": "github", "state": "st-charset"}).encode()

    status, body, _ = await call(
        bridge,
        "POST",
        "/v1/logins",
        data=raw,
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )

    assert status == 201, body


async def test_an_optional_body_may_be_left_out_without_a_content_type(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    status, body, _ = await call(
        bridge, "POST", "/v1/providers/github/allow-loopback", headers={"Content-Type": ""}
    )

    assert (status, body["changed"], body["dry_run"]) == (200, True, False)


async def test_a_required_body_left_out_is_422(bridge: RunningDaemon) -> None:
    for path in ("/v1/logins", "/v1/callbacks"):
        status, body, _ = await call(bridge, "POST", path)
        assert status == 422
        assert_problem(body, "validation_error")


async def test_a_ttl_is_json_schemas_integer(bridge: RunningDaemon) -> None:
    answers = {}
    for ttl in (60.0, 1e3, "60", True, 60.5):
        status, _, _ = await call(
            bridge,
            "POST",
            "/v1/logins",
            json={"provider_id": "github", "state": f"st-ttl-{ttl}", "ttl_seconds": ttl},
        )
        answers[repr(ttl)] = status

    assert answers == {"60.0": 201, "1000.0": 201, "'60'": 422, "True": 422, "60.5": 422}


# -- aiohttp's own refusals, and ours ----------------------------------------------


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/nope", "/v1/logins/a/b", "/callback/github"])
async def test_an_unknown_route_is_404_in_shape(bridge: RunningDaemon, path: str) -> None:
    status, body, _ = await call(bridge, "GET", path)

    assert status == 404
    assert_problem(body, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/logins", {"GET", "HEAD", "POST"}),
        ("POST", "/v1/status", {"GET", "HEAD"}),
        ("PATCH", "/v1/logins/some-id", {"GET", "HEAD", "DELETE"}),
        ("GET", "/v1/callbacks", {"POST"}),
        ("OPTIONS", "/v1/openapi.json", {"GET", "HEAD"}),
    ],
)
async def test_a_wrong_method_is_405_in_shape_with_allow(
    bridge: RunningDaemon, method: str, path: str, allowed: set[str]
) -> None:
    status, body, headers = await call(bridge, method, path)

    assert status == 405
    assert_problem(body, "method_not_allowed")
    assert set(headers["Allow"].split(",")) == allowed


@pytest.mark.parametrize("path", BODY_ROUTES)
async def test_a_body_too_big_is_413_in_shape(bridge: RunningDaemon, path: str) -> None:
    status, body, _ = await call(
        bridge, "POST", path, data=io.BytesIO(b" " * (MAX_BODY_BYTES + 1)), headers=JSON
    )

    assert status == 413
    assert_problem(body, "payload_too_large")


async def test_a_fault_of_ours_is_500_in_shape_and_logged(
    bridge: RunningDaemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(bridge.services.logins.store, "all", broken)

    with caplog.at_level(logging.ERROR, logger="bridge.daemon.control_api"):
        status, body, _ = await call(bridge, "GET", "/v1/logins")

    assert status == 500
    assert_problem(body, "internal_error")
    assert "a bug" not in body["message"]
    assert "control API: GET /v1/logins failed" in caplog.text
    assert "RuntimeError: a bug" in caplog.text


async def test_a_request_that_is_not_http_is_400_in_shape(
    bridge: RunningDaemon, tmp_path: Path
) -> None:
    """Past the app: aiohttp's parser refuses it, ControlProtocol answers for it."""
    path = tmp_path / "control-runner.sock"
    runner = ControlRunner(create_control_app(bridge.services), handle_signals=False)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    answers = []
    try:
        for request in (
            b"NOT HTTP AT ALL\r\n\r\n",
            b"GET /v1/status HTTP/1.1\r\nHost: bridge\r\nX-Long: " + b"x" * 10000 + b"\r\n\r\n",
        ):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(request)
            raw = await reader.read()
            writer.close()
            head, _, payload = raw.partition(b"\r\n\r\n")
            answers.append((head.split(b" ")[1], b"application/json" in head, json.loads(payload)))
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
        fine = await reader.read()
        writer.close()
    finally:
        await runner.cleanup()

    for status, is_json, body in answers:
        assert (status, is_json) == (b"400", True)
        assert_problem(body, "bad_request")
    assert fine.startswith(b"HTTP/1.1 200")


async def test_another_users_peer_is_refused_in_shape(
    bridge: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bridge.daemon.control_api as control_api

    monkeypatch.setattr(control_api, "peer_uid", lambda request: 65534)

    for method, path in (("GET", "/v1/status"), ("GET", "/v1/nope"), ("PUT", "/v1/logins")):
        status, body, _ = await call(bridge, method, path)
        assert status == 403
        assert_problem(body, "forbidden")


# -- GET /v1/logins filters -----------------------------------------------------------


async def test_the_list_filters_by_status_and_provider(bridge: RunningDaemon) -> None:
    first = await bridge.register("github", "st-f1")
    second = await bridge.register("google", "st-f2")
    third = await bridge.register("github", "st-f3")
    await call(bridge, "DELETE", f"/v1/logins/{first['id']}")

    async def ids(query: str) -> list[str]:
        status, body, _ = await call(bridge, "GET", f"/v1/logins{query}")
        assert status == 200
        return [login["id"] for login in body["logins"]]

    assert await ids("") == [first["id"], second["id"], third["id"]]
    assert await ids("?status=cancelled") == [first["id"]]
    assert await ids("?status=pending") == [second["id"], third["id"]]
    assert await ids("?provider_id=github") == [first["id"], third["id"]]
    assert await ids("?status=pending&provider_id=github") == [third["id"]]
    assert await ids("?status=succeeded") == []
    assert await ids("?provider_id=gitlab") == []


@pytest.mark.parametrize(
    "query",
    [
        "?status=done",
        "?status=",
        "?status=Pending",
        "?status=pending&status=failed",
        "?provider_id=",
        "?provider_id=..",
        "?provider_id=a%2Fb",
        "?provider_id=a%1Bb",
        "?provider_id=" + "x" * 201,
        "?provider_id=a&provider_id=b",
    ],
)
async def test_a_bad_filter_is_422(bridge: RunningDaemon, query: str) -> None:
    status, body, _ = await call(bridge, "GET", f"/v1/logins{query}")

    assert status == 422
    assert_problem(body, "validation_error")


# -- the browser check ------------------------------------------------------------------


async def test_the_browser_check_says_seen_without_a_wait_once_the_browser_came(
    bridge: RunningDaemon,
) -> None:
    _, issued, _ = await call(bridge, "POST", "/v1/checks/browser")
    token = issued["token"]
    _, before, _ = await call(bridge, "GET", f"/v1/checks/browser/{token}")

    async with bridge.browser.get(issued["url"]) as page:
        assert page.status == 200
    after = [
        (await call(bridge, "GET", f"/v1/checks/browser/{token}{query}"))[1]
        for query in ("", "?wait=0", "?wait=-1", "?wait=nan", "?wait=5")
    ]

    assert before == {"seen": False}
    assert after == [{"seen": True}] * 5


@pytest.mark.parametrize("wait", ["nan", "-5", "soon", "0", "inf"])
async def test_a_browser_check_never_issued_answers_at_once(
    bridge: RunningDaemon, wait: str
) -> None:
    started = time.monotonic()

    status, body, _ = await call(bridge, "GET", f"/v1/checks/browser/never-issued?wait={wait}")

    assert (status, body) == (200, {"seen": False})
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("wait", ["nan", "-5", "soon"])
async def test_a_wait_that_is_not_seconds_does_not_wait_for_the_browser(
    bridge: RunningDaemon, wait: str
) -> None:
    _, issued, _ = await call(bridge, "POST", "/v1/checks/browser")

    answer = await asyncio.wait_for(
        call(bridge, "GET", f"/v1/checks/browser/{issued['token']}?wait={wait}"), 5
    )

    assert answer[:2] == (200, {"seen": False})


# -- a pasted callback ------------------------------------------------------------------


async def paste(bridge: RunningDaemon, query: str) -> tuple[int, Any]:
    url = f"{bridge.url}/callback/github?{query}"
    status, body, _ = await call(bridge, "POST", "/v1/callbacks", json={"url": url})
    return status, body


async def test_a_paste_for_a_cancelled_login_is_404_and_names_it(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-gone")
    await call(bridge, "DELETE", f"/v1/logins/{login['id']}")

    status, body = await paste(bridge, "code=c&state=st-gone")

    assert status == 404
    assert_problem(body, "not_found")
    assert (body["login"]["id"], body["login"]["status"]) == (login["id"], "cancelled")
    assert "cancelled before any callback came" in body["message"]
    assert control_plane.calls == []


async def test_a_paste_for_an_expired_login_is_404(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = await bridge.register("github", "st-late", ttl_seconds=60)
    logins = bridge.services.logins
    monkeypatch.setattr(logins, "clock", lambda: time.time() + 120)

    status, body = await paste(bridge, "code=c&state=st-late")

    assert status == 404
    assert_problem(body, "not_found")
    assert (body["login"]["id"], body["login"]["status"]) == (login["id"], "expired")
    assert control_plane.calls == []


@pytest.mark.parametrize(
    ("query", "outcome"),
    [
        ("code=c", "succeeded"),
        ("error=access_denied", "denied"),
        ("error=server_error", "failed"),
    ],
)
async def test_a_repeated_paste_answers_the_outcome_again_and_forwards_nothing_more(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, query: str, outcome: str
) -> None:
    login = await bridge.register("github", "st-again")

    first = await paste(bridge, f"{query}&state=st-again")
    again = await paste(bridge, f"{query.replace('=c', '=other')}&state=st-again")

    assert [(s, b["id"], b["status"]) for s, b in (first, again)] == [
        (200, login["id"], outcome)
    ] * 2
    assert len(control_plane.calls) == (1 if outcome == "succeeded" else 0)


async def test_a_paste_after_the_browser_delivered_answers_its_outcome(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-both")
    await bridge.hit("code=c&state=st-both")

    status, body = await paste(bridge, "code=c&state=st-both")

    assert (status, body["id"], body["status"]) == (200, login["id"], "succeeded")
    assert len(control_plane.calls) == 1


async def test_a_paste_for_a_state_of_another_provider_is_404(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("google", "st-other")

    status, body = await paste(bridge, "code=c&state=st-other")

    assert status == 404
    assert_problem(body, "not_found")
    assert "login" not in body


# -- the document, served ---------------------------------------------------------------


async def test_the_document_is_served_as_committed(bridge: RunningDaemon) -> None:
    async with bridge.control.get("http://bridge/v1/openapi.json") as response:
        served = await response.read()
        content_type = response.content_type

    assert (response.status, content_type) == (200, "application/json")
    assert served == (REPO / "docs" / "control-api.openapi.json").read_bytes()
