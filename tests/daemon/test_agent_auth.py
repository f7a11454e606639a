"""Agent Auth: the daemon starts the flow with the control plane and learns how it ended."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import RunningDaemon
from tests.control_plane_double import DISABLED, ControlPlaneDouble


async def start_login(
    bridge: RunningDaemon, provider_id: str = "github", **fields: Any
) -> tuple[int, dict[str, Any]]:
    body = {"provider_id": provider_id, "scopes": ["repo"], **fields}
    async with bridge.control.post("http://bridge/v1/logins", json=body) as response:
        return response.status, bridge.remember(await response.json())


async def logins(bridge: RunningDaemon) -> list[dict[str, Any]]:
    async with bridge.control.get("http://bridge/v1/logins") as response:
        listed: list[dict[str, Any]] = (await response.json())["logins"]
        return listed


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def test_the_daemon_starts_the_flow_and_the_login_ends_with_the_token(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")

    status, created = await start_login(bridge, user_id="u-1")
    sent = query_of(created["auth_url"])
    status_code, _, _ = await bridge.hit(f"code=c-1&state={sent['state']}")
    done = await bridge.login(created["id"], wait=10)

    assert (status, created["status"]) == (201, "pending")
    assert sent["redirect_uri"] == created["redirect_uri"] == f"{bridge.url}/callback/github"
    authenticate = control_plane.auth_calls[0]
    assert authenticate.body == {
        "provider": "github",
        "scopes": ["repo"],
        "redirect_uri": created["redirect_uri"],
        "force_new": False,
        "user_id": "u-1",
    }
    assert authenticate.headers["X-Api-Key"] == control_plane.api_key
    assert status_code == 200
    assert done["status"] == "succeeded"
    assert done["result"]["token"] == control_plane.tokens[("github", "u-1")]
    assert done["result"]["already_connected"] is False
    assert done["result"]["control_plane_status"] == 200
    assert [c.body for c in control_plane.calls] == [{"code": "c-1", "state": sent["state"]}]


async def test_already_connected_succeeds_at_once_without_a_url(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.tokens[("github", None)] = "tok-existing"

    status, created = await start_login(bridge)

    assert status == 201
    assert created["status"] == "succeeded"
    assert "auth_url" not in created
    assert created["result"]["already_connected"] is True
    assert created["result"]["token"] == "tok-existing"
    assert created["result"]["control_plane_status"] is None


async def test_force_new_starts_a_flow_even_when_connected(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.tokens[("github", None)] = "tok-existing"

    _, created = await start_login(bridge, force_new=True)

    assert created["status"] == "pending"
    assert control_plane.auth_calls[0].body["force_new"] is True


async def test_the_hosted_fallback_ends_the_login_through_the_wait_alone(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    # The provider does not allow our redirect_uri: the control plane uses its own page.
    _, created = await start_login(bridge)
    sent = query_of(created["auth_url"])
    async with bridge.browser.get(
        sent["redirect_uri"], params={"code": "c", "state": sent["state"]}
    ) as r:
        assert r.status == 200  # the hosted page finished the flow
    done = await bridge.login(created["id"], wait=10)

    assert sent["redirect_uri"].startswith(control_plane.url + "/host-oauth-callback/")
    assert created["status"] == "pending"
    assert done["status"] == "succeeded"
    assert done["result"]["token"] == control_plane.tokens[("github", None)]
    assert done["result"]["control_plane_status"] is None
    assert control_plane.calls == []  # nothing was forwarded: the control plane did it


async def test_a_denial_at_the_provider_ends_the_login_and_its_wait(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")
    _, created = await start_login(bridge)
    state = query_of(created["auth_url"])["state"]

    await bridge.hit(f"error=access_denied&error_description=no&state={state}")
    done = await bridge.login(created["id"], wait=10)
    await wait_until(lambda: control_plane.waits_in_flight == 0)

    assert done["status"] == "denied"
    assert control_plane.calls == []


async def test_not_found_from_the_wait_expires_the_login(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    _, created = await start_login(bridge)
    await wait_until(lambda: control_plane.waits_in_flight == 1)

    control_plane.forget(control_plane.request_for(created["auth_url"]).auth_id)
    done = await bridge.login(created["id"], wait=10)

    assert done["status"] == "expired"
    assert "no longer knows" in done["result"]["message"]


async def test_one_long_poll_at_a_time_and_none_once_cancelled(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    _, created = await start_login(bridge)
    await wait_until(lambda: control_plane.waits_in_flight == 1)

    async with bridge.control.delete(f"http://bridge/v1/logins/{created['id']}") as r:
        assert r.status == 200
    await wait_until(lambda: control_plane.waits_in_flight == 0)

    assert control_plane.most_waits_in_flight == 1
    waits = [c for c in control_plane.auth_calls if "/wait/" in c.raw_path]
    assert len(waits) == 1  # a long-poll, not a loop of quick questions


@pytest.mark.parametrize(
    ("setup", "error", "status", "words"),
    [
        ("wrong-key", "control_plane_rejected", 401, "API key"),
        ("disabled", "control_plane_rejected", 403, "Agent Auth must be enabled"),
        ("422", "validation_error", 422, "invalid"),
        ("500", "control_plane_error", 500, "try again"),
        ("unknown-provider", "control_plane_rejected", 404, "provider id"),
    ],
)
async def test_a_refusal_to_start_answers_502_and_registers_nothing(
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    setup: str,
    error: str,
    status: int,
    words: str,
) -> None:
    provider = "github"
    if setup == "wrong-key":
        control_plane.api_key = "another-key"
    elif setup == "disabled":
        control_plane.agent_auth_enabled = False
    elif setup == "422":
        detail = [{"loc": ["body", "scopes"], "msg": "bad", "type": "value_error"}]
        control_plane.authenticate_answers.append((422, {"detail": detail}))
    elif setup == "500":
        control_plane.authenticate_answers.append((500, {"detail": "boom"}))
    else:
        provider = "gitlab"

    code, answer = await start_login(bridge, provider)

    assert code == 502
    assert answer["error"] == error
    assert answer["control_plane_status"] == status
    assert words in answer["message"]
    if setup == "disabled":
        assert DISABLED in answer["message"]
    assert await logins(bridge) == []


async def test_an_unreachable_control_plane_answers_502_and_registers_nothing(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    bridge: RunningDaemon = await start_daemon(
        OAUTH_BRIDGE_CONTROL_PLANE_URL="http://127.0.0.1:9",
        OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS="0.3",
    )

    code, answer = await start_login(bridge)

    assert (code, answer["error"]) == (502, "control_plane_unreachable")
    assert "control plane URL" in answer["message"]
    assert await logins(bridge) == []


async def test_a_forwarded_login_without_confirmation_succeeds_without_a_token(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    bridge: RunningDaemon = await start_daemon(OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS="0.5")
    control_plane.allow("github", f"{bridge.url}/callback/github")
    _, created = await start_login(bridge)
    state = query_of(created["auth_url"])["state"]
    # The callback answers 200 without claiming the request: the wait never says completed.
    control_plane.answer(200, {"ok": True})

    await bridge.hit(f"code=c&state={state}")
    done = await bridge.login(created["id"], wait=10)

    assert done["status"] == "succeeded"
    assert done["result"]["token"] is None
    assert done["result"]["control_plane_body"] == {"ok": True}


async def test_status_says_where_each_credential_came_from_and_never_its_value(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    async with bridge.control.get("http://bridge/v1/status") as response:
        text = await response.text()
        status = await response.json()

    assert status["credentials"] == {
        "api_key": "environment",
        "bearer_token": "environment",
        "workspace_id": "environment",
    }
    assert control_plane.api_key is not None
    assert control_plane.api_key not in text
    assert control_plane.bearer is not None
    assert control_plane.bearer not in text


async def allow_loopback(bridge: RunningDaemon, provider: str, **body: Any) -> tuple[int, Any]:
    async with bridge.control.post(
        f"http://bridge/v1/providers/{provider}/allow-loopback", json=body
    ) as response:
        return response.status, await response.json()


async def test_allow_loopback_adds_our_callback_once_and_keeps_the_others(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", "https://example.org/cb")
    ours = f"{bridge.url}/callback/github"

    dry = await allow_loopback(bridge, "github", dry_run=True)
    unchanged_by_dry_run = list(control_plane.providers["github"]["allowed_redirect_uris"])
    first = await allow_loopback(bridge, "github")
    second = await allow_loopback(bridge, "github")

    assert dry == (
        200,
        {
            "provider_id": "github",
            "redirect_uri": ours,
            "allowed_redirect_uris": ["https://example.org/cb", ours],
            "changed": True,
            "dry_run": True,
        },
    )
    assert unchanged_by_dry_run == ["https://example.org/cb"]
    assert first[1]["changed"] is True
    assert second[1]["changed"] is False
    assert control_plane.providers["github"]["allowed_redirect_uris"] == [
        "https://example.org/cb",
        ours,
    ]
    patches = [c for c in control_plane.auth_calls if c.body and "allowed_redirect_uris" in c.body]
    assert len(patches) == 1


async def test_allow_loopback_for_an_unknown_provider_is_a_502(bridge: RunningDaemon) -> None:
    code, answer = await allow_loopback(bridge, "gitlab")

    assert (code, answer["error"], answer["control_plane_status"]) == (
        502,
        "control_plane_rejected",
        404,
    )


async def wait_until(condition: Any, seconds: float = 5.0) -> None:
    """Poll a condition of the double, bounded by a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_many_waiting_logins_never_hold_up_a_forward(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")
    # More long-polls than aiohttp's default connection pool holds (100).
    started = [await start_login(bridge) for _ in range(120)]
    await wait_until(lambda: control_plane.waits_in_flight == 120, seconds=10)
    state = query_of(started[-1][1]["auth_url"])["state"]

    await bridge.hit(f"code=c-many&state={state}")
    done = await bridge.login(started[-1][1]["id"], wait=10)

    assert done["status"] == "succeeded", done["result"]
    assert done["result"]["token"] is not None


@pytest.mark.parametrize(("delay", "status"), [(0.3, None), (0.0, 500)])
async def test_the_token_survives_a_wait_that_answers_before_the_forward_does(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, delay: float, status: int | None
) -> None:
    # The control plane stores the token, then answers the callback late, or with a 500:
    # its wait endpoint has said 'completed' first, and that is the final word.
    control_plane.allow("github", f"{bridge.url}/callback/github")
    control_plane.script.after_claim_delay = delay
    control_plane.script.after_claim_status = status
    _, created = await start_login(bridge)
    state = query_of(created["auth_url"])["state"]

    await bridge.hit(f"code=c-race&state={state}")
    done = await bridge.login(created["id"], wait=10)

    assert done["status"] == "succeeded", done["result"]
    assert done["result"]["token"] == control_plane.tokens[("github", None)]


async def test_a_failing_wait_endpoint_is_asked_again_and_the_login_still_ends_right(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.wait_failures = 1
    _, created = await start_login(bridge)
    sent = query_of(created["auth_url"])
    await wait_until(lambda: control_plane.wait_failures == 0)

    async with bridge.browser.get(
        sent["redirect_uri"], params={"code": "c", "state": sent["state"]}
    ) as hosted:
        assert hosted.status == 200
    done = await bridge.login(created["id"], wait=10)

    assert done["status"] == "succeeded"
    assert done["result"]["token"] == control_plane.tokens[("github", None)]
