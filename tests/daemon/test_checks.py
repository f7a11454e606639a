"""What ``doctor`` asks the daemon: LangSmith reached and accepting us, and a browser reaching us."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_flow import meta_status


async def call(bridge: RunningDaemon, method: str, path: str) -> Any:
    async with bridge.control.request(method, f"http://bridge{path}") as response:
        assert response.status == 200
        return await response.json()


async def test_the_control_plane_check_lists_whether_each_provider_allows_us(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    before = await call(bridge, "GET", "/v1/checks/control-plane")
    control_plane.allow("github", f"{bridge.url}/callback/github")
    after = await call(bridge, "GET", "/v1/checks/control-plane")

    assert (before["reachable"], before["accepted"]) == (True, True)
    assert before["providers"] == [
        {
            "provider_id": "github",
            "redirect_uri": f"{bridge.url}/callback/github",
            "allows_this_daemon": False,
        }
    ]
    assert after["providers"][0]["allows_this_daemon"] is True
    assert [c.raw_path for c in control_plane.auth_calls] == ["/v2/auth/providers"] * 2


async def test_a_deployment_that_does_not_tell_is_neither_pass_nor_fail(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    del control_plane.providers["github"]["allowed_redirect_uris"]

    checked = await call(bridge, "GET", "/v1/checks/control-plane")

    assert checked["providers"][0]["allows_this_daemon"] is None


async def test_refused_credentials_are_reachable_but_not_accepted(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.api_key = "another-key"

    checked = await call(bridge, "GET", "/v1/checks/control-plane")

    assert (checked["reachable"], checked["accepted"]) == (True, False)
    assert checked["control_plane_status"] == 401
    assert "API key" in checked["message"]


async def test_an_unreachable_control_plane_is_not_reachable(start_daemon: Any) -> None:
    bridge: RunningDaemon = await start_daemon(
        OAUTH_BRIDGE_CONTROL_PLANE_URL="http://127.0.0.1:9",
        OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS="0.3",
    )

    checked = await call(bridge, "GET", "/v1/checks/control-plane")

    assert (checked["reachable"], checked["accepted"]) == (False, False)


async def test_the_browser_check_address_works_once(bridge: RunningDaemon) -> None:
    issued = await call(bridge, "POST", "/v1/checks/browser")
    unseen = await call(bridge, "GET", f"/v1/checks/browser/{issued['token']}?wait=0")

    async with bridge.browser.get(issued["url"]) as first:
        first_page, first_status = await first.text(), first.status
    async with bridge.browser.get(issued["url"]) as again:
        again_status = again.status
    seen = await call(bridge, "GET", f"/v1/checks/browser/{issued['token']}?wait=5")
    never = await call(bridge, "GET", "/v1/checks/browser/never-issued?wait=bogus")

    assert issued["url"] == f"{bridge.url}/self-test/{issued['token']}"
    assert unseen == {"seen": False}
    assert (first_status, meta_status(first_page)) == (200, "unknown")
    assert "This browser reaches oauth-bridge" in first_page
    assert again_status == 404
    assert seen == {"seen": True}
    assert never == {"seen": False}


async def test_only_a_few_check_addresses_are_kept(bridge: RunningDaemon) -> None:
    tokens = [(await call(bridge, "POST", "/v1/checks/browser"))["token"] for _ in range(20)]

    async with bridge.browser.get(f"{bridge.url}/self-test/{tokens[0]}") as oldest:
        oldest_status = oldest.status
    async with bridge.browser.get(f"{bridge.url}/self-test/{tokens[-1]}") as newest:
        newest_status = newest.status

    assert (oldest_status, newest_status) == (404, 200)
