"""The trampoline /go/{token}: one jump to the provider, proof that the browser reaches us."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_agent_auth import start_login
from tests.daemon.test_flow import meta_status


async def jump(bridge: RunningDaemon, url: str, **headers: str) -> tuple[int, str, str]:
    async with bridge.browser.get(url, allow_redirects=False, headers=headers) as answer:
        return answer.status, answer.headers.get("Location", ""), await answer.text()


async def loopback_login(bridge: RunningDaemon, control_plane: ControlPlaneDouble) -> Any:
    control_plane.allow("github", f"{bridge.url}/callback/github")
    status, created = await start_login(bridge)
    assert status == 201
    return created


async def test_the_trampoline_sends_the_browser_on_once_and_says_it_came(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    created = await loopback_login(bridge, control_plane)
    before = await bridge.login(created["id"])

    first = await jump(bridge, created["open_url"])
    again = await jump(bridge, created["open_url"])
    after = await bridge.login(created["id"])

    assert created["open_url"].startswith(f"{bridge.url}/go/")
    assert created["callback"] == "loopback"
    assert before["browser_seen"] is False
    assert first[:2] == (302, created["auth_url"])
    assert (again[0], meta_status(again[2])) == (404, "unknown")
    assert created["auth_url"] not in again[2]
    assert after["browser_seen"] is True
    assert after["status"] == "pending"  # seen, not consumed: the callback does that


async def test_a_prefetch_spends_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    created = await loopback_login(bridge, control_plane)

    fetched = await jump(bridge, created["open_url"], **{"Sec-Purpose": "prefetch"})
    seen_after_prefetch = (await bridge.login(created["id"]))["browser_seen"]
    opened = await jump(bridge, created["open_url"])

    assert fetched[0] == 425
    assert created["auth_url"] not in fetched[2]
    assert seen_after_prefetch is False
    assert opened[:2] == (302, created["auth_url"])


async def test_another_host_gets_421_and_spends_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    created = await loopback_login(bridge, control_plane)

    rebound = await jump(bridge, created["open_url"], Host=f"evil.example:{bridge.port}")
    opened = await jump(bridge, created["open_url"])

    assert rebound[0] == 421
    assert opened[0] == 302


async def test_a_cancelled_logins_trampoline_leads_nowhere(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    created = await loopback_login(bridge, control_plane)
    async with bridge.control.delete(f"http://bridge/v1/logins/{created['id']}") as cancelled:
        assert cancelled.status == 200

    status, location, page = await jump(bridge, created["open_url"])

    assert (status, location, meta_status(page)) == (404, "", "unknown")


async def test_an_unknown_token_is_our_404_page(bridge: RunningDaemon) -> None:
    status, _, page = await jump(bridge, f"{bridge.url}/go/never-issued")

    assert (status, meta_status(page)) == (404, "unknown")


async def test_a_hosted_login_opens_the_authorization_url_itself(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")  # allowed, yet not asked for

    status, created = await start_login(bridge, callback="hosted")

    authenticate = control_plane.auth_calls[-1]
    assert status == 201
    assert "redirect_uri" not in authenticate.body
    assert created["callback"] == "hosted"
    assert created["open_url"] == created["auth_url"]
    assert created["redirect_uri"] == f"{control_plane.url}/host-oauth-callback/github"


async def test_an_authorization_url_that_is_not_https_is_refused(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    for url in (
        "--remote-debugging-port=46333",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https:///no-host",
        "https://provider.invalid/a b",
    ):
        control_plane.authenticate_answers.append(
            (200, {"status": "pending", "url": url, "auth_id": "auth-x"})
        )
        status, body = await start_login(bridge)

        assert (status, body["error"]) == (502, "control_plane_error"), url
        assert url not in body["message"]
    listed = await bridge.control.get("http://bridge/v1/logins")
    assert (await listed.json())["logins"] == []


async def test_a_loopback_redirect_that_is_not_ours_is_refused(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    # A stale default, or another user's daemon on another port: the code would go there.
    elsewhere = f"http://127.0.0.1:{bridge.port + 1}/callback/github"
    control_plane.authenticate_answers.append(
        (
            200,
            {
                "status": "pending",
                "url": f"https://provider.invalid/a?state=s&redirect_uri={elsewhere}",
                "auth_id": "auth-x",
            },
        )
    )

    status, body = await start_login(bridge)

    assert (status, body["error"]) == (502, "control_plane_error")
    assert "not this oauth-bridge's callback" in body["message"]
