"""End to end over real sockets: register on control.sock, hit the callback over TCP."""

from __future__ import annotations

import asyncio
import re
import socket

from tests.conftest import RunningDaemon
from tests.control_plane_double import API_KEY, BEARER, WORKSPACE_ID, ControlPlaneDouble


def meta_status(page: str) -> str:
    match = re.search(r'<meta name="oauth-bridge-status" content="([^"]+)">', page)
    assert match, page
    return match.group(1)


async def test_a_callback_is_forwarded_once_with_exact_body_and_headers(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-1")
    waiter = asyncio.create_task(bridge.login(login["id"], wait=30))

    status, page, response = await bridge.hit("code=c0de&state=st-1")

    assert [c.body for c in control_plane.calls] == [{"code": "c0de", "state": "st-1"}]
    call = control_plane.calls[0]
    assert call.raw_path == "/v2/auth/callback/github"
    assert call.headers["X-Api-Key"] == API_KEY
    assert call.headers["X-Tenant-Id"] == WORKSPACE_ID
    assert call.headers["Authorization"] == f"Bearer {BEARER}"
    assert call.headers["User-Agent"].startswith("oauth-bridge/")
    assert call.headers["Content-Type"] == "application/json"
    assert (status, meta_status(page)) == (200, "succeeded")
    assert response.url.path == f"/result/{login['id']}"
    assert response.url.query_string == ""
    assert response.history[0].status == 303
    done = await asyncio.wait_for(waiter, 5)  # the long-poll answered at once
    assert done["status"] == "succeeded"
    assert done["result"] == {
        "control_plane_status": 200,
        "control_plane_body": {"connected": True, "provider_id": "github"},
    }
    assert "state" not in done
    assert "code" not in str(done)


async def test_login_object_has_the_contract_shape(bridge: RunningDaemon) -> None:
    created = await bridge.register("github", "st-shape")
    login = await bridge.login(created["id"])

    assert set(login) == {
        "id",
        "provider_id",
        "status",
        "redirect_uri",
        "callback",
        "browser_seen",
        "credentials",
        "created_at",
        "expires_at",
        "result",
    }
    assert set(created) == set(login) | {"secret"}
    assert (login["callback"], login["browser_seen"], login["credentials"]) == (
        "loopback",
        False,
        "daemon",
    )
    assert login["status"] == "pending"
    assert login["result"] is None
    assert login["redirect_uri"] == f"{bridge.url}/callback/github"
    assert login["created_at"].endswith("Z")
    assert login["expires_at"] > login["created_at"]


async def test_provider_id_is_percent_encoded_as_one_path_segment(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    provider = "acme corp?x#y%z"
    login = await bridge.register(provider, "st-enc")
    assert login["redirect_uri"].endswith("/callback/acme%20corp%3Fx%23y%25z")

    async with bridge.browser.get(login["redirect_uri"] + "?code=c&state=st-enc") as response:
        assert response.status == 200

    assert control_plane.calls[0].raw_path == "/v2/auth/callback/acme%20corp%3Fx%23y%25z"
    assert control_plane.calls[0].provider_id == provider


async def test_form_post_callback_is_forwarded(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "st-form")

    async with bridge.browser.post(
        f"{bridge.url}/callback/github", data={"code": "formcode", "state": "st-form"}
    ) as response:
        page = await response.text()
        final = response.url

    assert meta_status(page) == "succeeded"
    assert final.path == f"/result/{login['id']}"
    assert [c.body for c in control_plane.calls] == [{"code": "formcode", "state": "st-form"}]


async def test_healthz_answers_ok(bridge: RunningDaemon) -> None:
    async with bridge.browser.get(f"{bridge.url}/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})


def host_has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_ipv6_loopback_serves_the_same_port_where_the_host_has_it(
    bridge: RunningDaemon,
) -> None:
    expected = host_has_ipv6_loopback()

    assert expected == (f"[::1]:{bridge.port}" in bridge.services.allowed_hosts)
    if expected:
        async with bridge.browser.get(
            f"http://[::1]:{bridge.port}/healthz", headers={"Host": f"[::1]:{bridge.port}"}
        ) as response:
            assert response.status == 200


async def test_success_url_replaces_the_result_page(
    start_daemon: object, control_plane: ControlPlaneDouble
) -> None:
    running: RunningDaemon = await start_daemon(  # type: ignore[operator]
        OAUTH_BRIDGE_SUCCESS_URL="http://127.0.0.1:1/done"
    )
    await running.register("github", "st-s")

    async with running.browser.get(
        f"{running.url}/callback/github?code=c&state=st-s", allow_redirects=False
    ) as response:
        assert (response.status, response.headers["Location"]) == (303, "http://127.0.0.1:1/done")


async def test_success_url_is_never_taken_from_the_request(bridge: RunningDaemon) -> None:
    await bridge.register("github", "st-r")

    async with bridge.browser.get(
        f"{bridge.url}/callback/github?code=c&state=st-r&redirect=http://evil.example/"
        "&next=http://evil.example/&success_url=http://evil.example/",
        allow_redirects=False,
    ) as response:
        location = response.headers["Location"]

    assert location.startswith("/result/")
    assert "evil" not in location
