"""The low findings of the other-users review that live in the daemon, each held by a test."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.daemon.services import proxy_for
from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble


async def test_status_never_shows_a_password_in_the_control_plane_url(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    with_password = control_plane.url.replace("http://", "http://admin:hunter2@")
    bridge: RunningDaemon = await start_daemon(OAUTH_BRIDGE_CONTROL_PLANE_URL=with_password)

    async with bridge.control.get("http://bridge/v1/status") as answer:
        status = await answer.json()

    assert "hunter2" not in str(status)
    assert status["control_plane_url"].startswith(control_plane.url)


async def test_a_registration_while_stopping_is_refused_and_nothing_is_registered(
    bridge: RunningDaemon,
) -> None:
    bridge.services.logins.begin_shutdown()

    async with bridge.control.post(
        "http://bridge/v1/logins", json={"provider_id": "github", "state": "late"}
    ) as answer:
        status, body = answer.status, await answer.json()

    assert (status, body["error"]) == (503, "stopping")
    assert bridge.services.logins.find_by_state("late") is None


async def test_a_stray_request_does_not_keep_the_daemon_from_idling_out(
    bridge: RunningDaemon,
) -> None:
    services = bridge.services
    services.last_activity = 0.0

    for path in ("/favicon.ico", "/callback/github?code=c&state=nobodys", "/go/never"):
        async with bridge.browser.get(f"{bridge.url}{path}") as answer:
            assert answer.status >= 400
    after_strays = services.last_activity
    await bridge.register("github", "st-real")
    services.last_activity = 0.0
    status, _, _ = await bridge.hit("code=c&state=st-real")

    assert status == 200
    assert after_strays == 0.0
    assert services.last_activity > 0.0


def test_a_plain_http_control_plane_on_loopback_is_never_reached_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    assert proxy_for("http://127.0.0.1:9/") is None
    assert proxy_for("http://[::1]:9/") is None
    assert proxy_for("http://localhost:9/") is None
    assert proxy_for("https://api.host.langchain.com") == "http://proxy.invalid:3128"
    # https stays encrypted through a proxy's CONNECT, on loopback too.
    assert proxy_for("https://127.0.0.1:9/") == "http://proxy.invalid:3128"
