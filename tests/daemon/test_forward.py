"""The forward: classification of every answer, and retries only where the code is unused."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from tests.conftest import RunningDaemon, free_port
from tests.control_plane_double import ControlPlaneDouble


async def forward_once(bridge: RunningDaemon, state: str = "st-f") -> dict[str, Any]:
    login = await bridge.register("github", state)
    await bridge.hit(f"code=c&state={state}")
    return await bridge.login(login["id"], wait=10)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, "control_plane_rejected"),
        (403, "control_plane_rejected"),
        (400, "control_plane_rejected"),
        (404, "control_plane_rejected"),
        (409, "control_plane_rejected"),
        (500, "control_plane_error"),
        (502, "control_plane_error"),
    ],
)
async def test_an_error_answer_is_classified(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, status: int, error: str
) -> None:
    control_plane.answer(status, {"detail": "nope"})

    login = await forward_once(bridge)

    assert ("failed", error, status) == (
        login["status"],
        login["result"]["error"],
        login["result"]["control_plane_status"],
    )
    assert len(control_plane.calls) == 1  # never retried after a 4xx or 500


async def test_a_credentials_refusal_points_at_the_credentials(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.api_key = "another-key"  # the double now refuses ours with 401

    login = await forward_once(bridge)

    assert login["result"]["error"] == "control_plane_rejected"
    assert "LANGSMITH_API_KEY" in login["result"]["message"]


async def test_a_422_is_a_validation_error_with_the_parsed_detail(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    detail = [{"loc": ["body", "code"], "msg": "Code already used", "type": "value_error"}]
    control_plane.answer(422, {"detail": detail})

    login = await forward_once(bridge)

    assert ("validation_error", 422, {"detail": detail}) == (
        login["result"]["error"],
        login["result"]["control_plane_status"],
        login["result"]["detail"],
    )


async def test_a_non_json_answer_is_classified_without_a_crash(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.answer(
        502, b"<html><body>Bad gateway (proxy)</body></html>", {"Content-Type": "text/html"}
    )

    login = await forward_once(bridge)

    assert (
        login["result"]["error"],
        login["result"]["control_plane_status"],
    ) == ("control_plane_error", 502)


async def test_a_non_json_2xx_from_a_proxy_is_not_taken_for_success(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.answer(200, b"<html>captive portal</html>", {"Content-Type": "text/html"})

    login = await forward_once(bridge)

    assert (login["status"], login["result"]["error"]) == ("failed", "control_plane_error")


@pytest.mark.parametrize("status", [429, 503])
async def test_429_and_503_are_retried_honouring_retry_after(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, status: int
) -> None:
    control_plane.answer(status, {"detail": "busy"}, {"Retry-After": "1"})
    started = time.monotonic()

    login = await forward_once(bridge)

    assert login["status"] == "succeeded"
    assert len(control_plane.calls) == 2
    assert time.monotonic() - started >= 1.0  # it waited as told, not at once


async def test_a_retry_after_beyond_the_deadline_gives_up_with_the_answer(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.answer(503, {"detail": "down"}, {"Retry-After": "3600"})

    login = await forward_once(bridge)

    assert (
        login["result"]["error"],
        login["result"]["control_plane_status"],
    ) == ("control_plane_error", 503)
    assert len(control_plane.calls) == 1


async def test_a_refused_connection_is_retried_then_unreachable(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    running: RunningDaemon = await start_daemon(
        OAUTH_BRIDGE_CONTROL_PLANE_URL=f"http://127.0.0.1:{free_port()}",
        OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS="1",
    )

    login = await forward_once(running)

    assert (login["status"], login["result"]["error"]) == ("failed", "control_plane_unreachable")
    assert "control_plane_status" not in login["result"]


async def test_a_connect_failure_then_success_is_retried(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    port = free_port()
    running: RunningDaemon = await start_daemon(
        OAUTH_BRIDGE_CONTROL_PLANE_URL=f"http://127.0.0.1:{port}",
    )
    login = await running.register("github", "st-late")
    refused = asyncio.Event()

    class OnRefused(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "could not connect" in record.getMessage():
                refused.set()

    handler = OnRefused()
    logging.getLogger("bridge.daemon.control_plane").addHandler(handler)
    hit = asyncio.create_task(running.hit("code=c&state=st-late"))
    # The control plane comes up only after the first attempt was refused.
    await asyncio.wait_for(refused.wait(), 5)
    logging.getLogger("bridge.daemon.control_plane").removeHandler(handler)
    late = ControlPlaneDouble()
    await late.start_on(port)
    try:
        done = await running.login(login["id"], wait=10)
        assert (done["status"], len(late.calls)) == ("succeeded", 1)
    finally:
        await hit
        await late.stop()


async def test_a_timeout_after_sending_is_never_retried(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    running: RunningDaemon = await start_daemon(OAUTH_BRIDGE_REQUEST_TIMEOUT_SECONDS="0.5")
    control_plane.script.hang = True

    login = await forward_once(running)

    assert (login["status"], login["result"]["error"]) == ("failed", "control_plane_unreachable")
    assert "not sent again" in login["result"]["message"]
    assert len(control_plane.calls) == 1


async def test_no_credentials_means_no_credential_headers(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    control_plane.api_key = control_plane.workspace_id = control_plane.bearer = None
    running: RunningDaemon = await start_daemon(
        LANGSMITH_API_KEY="", LANGSMITH_WORKSPACE_ID="", OAUTH_BRIDGE_BEARER_TOKEN=""
    )

    await forward_once(running)

    headers = control_plane.calls[0].headers
    assert not {"X-Api-Key", "X-Tenant-Id", "Authorization"} & set(headers)


async def test_the_proxy_named_by_the_environment_carries_the_forward(
    start_daemon: Any, control_plane: ControlPlaneDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The double plays the proxy too: it gets the absolute-form request meant for the
    # control plane, whose name does not even resolve here.
    proxy = control_plane.url.replace("http://", "http://alice:s3cret@")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    running: RunningDaemon = await start_daemon(
        OAUTH_BRIDGE_CONTROL_PLANE_URL="http://control-plane.invalid",
        OAUTH_BRIDGE_ALLOW_INSECURE_CONTROL_PLANE="true",  # plain http, off this machine
    )

    login = await forward_once(running)

    assert login["status"] == "succeeded"
    assert control_plane.calls[0].host == "control-plane.invalid"
    assert control_plane.calls[0].headers["Proxy-Authorization"] == "Basic YWxpY2U6czNjcmV0"


async def test_no_proxy_sends_the_forward_direct(
    start_daemon: Any, control_plane: ControlPlaneDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    running: RunningDaemon = await start_daemon()

    login = await forward_once(running)

    assert login["status"] == "succeeded"
    assert "Proxy-Authorization" not in control_plane.calls[0].headers


async def test_an_answer_arriving_in_pieces_is_read_whole(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.script.split_body = True  # half the JSON, a pause, then the rest

    login = await forward_once(bridge)

    assert login["status"] == "succeeded"
    assert login["result"]["control_plane_body"] == {"connected": True, "provider_id": "github"}


async def test_a_connection_dropped_after_sending_is_never_retried(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.script.drop = True  # reads the code, then hangs up without an answer

    login = await forward_once(bridge)

    assert (login["status"], login["result"]["error"]) == ("failed", "control_plane_unreachable")
    assert "not sent again" in login["result"]["message"]
    assert len(control_plane.calls) == 1


async def test_a_forward_after_the_control_plane_closed_an_idle_connection_succeeds(
    start_daemon: Any,
) -> None:
    # A control plane that closes kept-alive connections quickly (uvicorn's default is 5 s).
    quick = ControlPlaneDouble()
    await quick.start_on(0, keepalive_timeout=0.2)
    try:
        running: RunningDaemon = await start_daemon(OAUTH_BRIDGE_CONTROL_PLANE_URL=quick.url)
        first = await running.register("github", "st-first")
        await running.hit("code=c1&state=st-first")
        assert (await running.login(first["id"], wait=10))["status"] == "succeeded"
        # The double closes the idle connection on its side.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while quick.open_connections:
            assert loop.time() < deadline, "the double never closed the idle connection"
            await asyncio.sleep(0.01)

        second = await running.register("github", "st-second")
        await running.hit("code=c2&state=st-second")
        done = await running.login(second["id"], wait=10)

        assert done["status"] == "succeeded", done["result"]
        assert len(quick.calls) == 2
    finally:
        await quick.stop()
