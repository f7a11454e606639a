"""Who sees a token: only the tool that started the login; and a login made as its caller's user."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import RunningDaemon
from tests.control_plane_double import API_KEY, ControlPlaneDouble
from tests.daemon.test_agent_auth import query_of, start_login

KEY_B = "key-of-user-b-0789"


async def call(
    bridge: RunningDaemon, method: str, path: str, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with bridge.control.request(method, f"http://bridge{path}", **kw) as response:
        return response.status, await response.json()


async def connected_login(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, **headers: str
) -> tuple[dict[str, Any], str]:
    """Run an Agent Auth login to its end through the browser; return it (201) and its token."""
    control_plane.allow("github", f"{bridge.url}/callback/github")
    async with bridge.control.post(
        "http://bridge/v1/logins",
        json={"provider_id": "github", "scopes": ["repo"]},
        headers=headers,
    ) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = bridge.remember(await response.json())
    state = query_of(created["auth_url"])["state"]
    status, _, _ = await bridge.hit(urlencode({"code": "c-1", "state": state}))
    assert status == 200
    done = await bridge.login(created["id"], wait=10)
    assert done["status"] == "succeeded", done
    token = done["result"]["token"]
    assert isinstance(token, str)
    return created, token


async def test_the_token_is_only_in_answers_that_show_the_logins_secret(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    created, token = await connected_login(bridge, control_plane)
    login_id = created["id"]
    state = query_of(created["auth_url"])["state"]
    pasted = f"{bridge.url}/callback/github?" + urlencode({"code": "c-1", "state": state})

    answers = {
        "GET without the secret": await call(bridge, "GET", f"/v1/logins/{login_id}"),
        "list": await call(bridge, "GET", "/v1/logins"),
        "status": await call(bridge, "GET", "/v1/status"),
        "a pasted repeat": await call(bridge, "POST", "/v1/callbacks", json={"url": pasted}),
    }
    wrong = await call(
        bridge, "GET", f"/v1/logins/{login_id}", headers={"X-Login-Secret": "guessed"}
    )
    right = await call(
        bridge, "GET", f"/v1/logins/{login_id}", headers={"X-Login-Secret": created["secret"]}
    )

    for where, (status, body) in answers.items():
        assert status == 200, where
        text = json.dumps(body)
        assert token not in text, where
        assert '"token"' not in text, where
        assert "control_plane_body" not in text, where
        assert created["secret"] not in text, where
    assert wrong[0] == 403
    assert token not in json.dumps(wrong[1])
    assert right[0] == 200
    assert right[1]["result"]["token"] == token
    assert "control_plane_body" in right[1]["result"]
    assert "secret" not in right[1]


async def test_an_already_connected_login_hands_its_token_only_in_the_201(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.tokens[("github", None)] = "tok-canary-existing"

    status, created = await start_login(bridge)
    listed = await call(bridge, "GET", "/v1/logins")

    assert (status, created["result"]["token"]) == (201, "tok-canary-existing")
    assert "tok-canary-existing" not in json.dumps(listed[1])


async def test_a_caller_with_its_own_key_makes_the_login_as_its_langsmith_user(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.add_user(KEY_B, "user-b")

    created, token = await connected_login(bridge, control_plane, **{"X-Api-Key": KEY_B})

    assert created["credentials"] == "caller"
    authenticate = next(c for c in control_plane.auth_calls if c.raw_path.endswith("authenticate"))
    assert authenticate.headers["X-Api-Key"] == KEY_B
    assert [c.headers["X-Api-Key"] for c in control_plane.calls] == [KEY_B]
    waits = [c for c in control_plane.auth_calls if "/wait/" in c.raw_path]
    assert waits
    assert {c.headers["X-Api-Key"] for c in waits} == {KEY_B}
    assert control_plane.tokens_of["user-b"] == {("github", None): token}
    assert control_plane.tokens == {}  # nothing under the daemon's user


async def test_the_daemons_own_key_given_again_is_the_daemons(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    created, _ = await connected_login(bridge, control_plane, **{"X-Api-Key": API_KEY})

    assert created["credentials"] == "daemon"


async def test_a_bad_authorization_header_is_refused_and_nothing_is_registered(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    status, body = await call(
        bridge,
        "POST",
        "/v1/logins",
        json={"provider_id": "github", "scopes": ["repo"]},
        headers={"Authorization": "Basic dXNlcjpwYXNz"},
    )

    assert (status, body["error"]) == (422, "validation_error")
    assert control_plane.auth_calls == []


@pytest.mark.parametrize("form", ["expect", "agent auth"])
async def test_a_restart_loses_the_callers_credentials_and_nothing_is_sent_as_another_user(
    start_daemon: Any, control_plane: ControlPlaneDouble, form: str
) -> None:
    control_plane.add_user(KEY_B, "user-b")
    first: RunningDaemon = await start_daemon()
    control_plane.allow("github", f"{first.url}/callback/github")
    body: dict[str, Any] = (
        {"provider_id": "github", "state": "st-b"}
        if form == "expect"
        else {"provider_id": "github", "scopes": ["repo"]}
    )
    status, created = await call(
        first, "POST", "/v1/logins", json=body, headers={"X-Api-Key": KEY_B}
    )
    assert (status, created["credentials"]) == (201, "caller")
    state = "st-b" if form == "expect" else query_of(created["auth_url"])["state"]
    first.stop.set()
    await asyncio.wait_for(first.task, 30)

    again: RunningDaemon = await start_daemon()
    again.secrets[created["id"]] = created["secret"]
    # The port moved (port 0): the browser comes back to the new daemon's.
    code, page, _ = await again.hit(urlencode({"code": "c-b", "state": state}))
    done = await again.login(created["id"])

    assert control_plane.calls == []  # never forwarded, as user-b or as the daemon's
    assert done["status"] == "failed"
    assert done["result"]["error"] == "credentials_lost"
    assert code == 200
    assert 'content="failed"' in page


async def test_connections_are_listed_and_revoked_for_the_callers_user(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.add_user(KEY_B, "user-b")
    control_plane.providers["slack"] = {**control_plane.providers["github"], "provider_id": "slack"}
    control_plane.providers["slack"]["name"] = "Slack"
    control_plane.tokens_of["user-b"][("github", None)] = "tok-b"
    control_plane.tokens[("slack", None)] = "tok-a"  # the daemon's user's: not user-b's
    as_b = {"X-Api-Key": KEY_B}

    before = await call(bridge, "GET", "/v1/connections", headers=as_b)
    revoked = await call(bridge, "DELETE", "/v1/connections/github", headers=as_b)
    after = await call(bridge, "GET", "/v1/connections", headers=as_b)

    assert before == (
        200,
        {
            "connections": [
                {"provider_id": "github", "name": "GitHub", "connected": True},
                {"provider_id": "slack", "name": "Slack", "connected": False},
            ]
        },
    )
    assert revoked == (200, {"provider_id": "github", "connected": False})
    assert control_plane.revoked == [("user-b", "github")]
    assert after[1]["connections"][0]["connected"] is False
    assert control_plane.tokens == {("slack", None): "tok-a"}


async def test_connections_answer_502_when_the_control_plane_refuses(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    status, body = await call(
        bridge, "GET", "/v1/connections", headers={"X-Api-Key": "nobodys-key"}
    )

    assert (status, body["error"], body["control_plane_status"]) == (
        502,
        "control_plane_rejected",
        401,
    )


@pytest.mark.parametrize("provider_id", ["..", "%2E%2E", "a%2Fb", "%0A"])
async def test_a_provider_id_in_a_path_is_one_segment_or_refused(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, provider_id: str
) -> None:
    from yarl import URL

    for method, path in (
        ("DELETE", f"/v1/connections/{provider_id}"),
        ("POST", f"/v1/providers/{provider_id}/allow-loopback"),
    ):
        url = URL(f"http://bridge{path}", encoded=True)
        async with bridge.control.request(method, url) as response:
            assert response.status in (404, 422), (method, path, response.status)
    assert control_plane.auth_calls == []


async def test_an_interrupted_login_the_control_plane_completed_succeeds_at_the_next_start(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    first: RunningDaemon = await start_daemon(OAUTH_BRIDGE_SHUTDOWN_GRACE_SECONDS="0.2")
    control_plane.allow("github", f"{first.url}/callback/github")
    _status, created = await start_login(first)
    state = query_of(created["auth_url"])["state"]
    control_plane.script.hang = True  # the forward gets no answer...
    hit = asyncio.create_task(first.hit(urlencode({"code": "c-1", "state": state})))
    await asyncio.wait_for(control_plane.called.wait(), 10)
    auth = control_plane.request_for(created["auth_url"])
    control_plane._complete(auth)  # ...yet the control plane used the code
    first.stop.set()
    await asyncio.wait_for(first.task, 30)
    hit.cancel()
    control_plane.release.set()

    again: RunningDaemon = await start_daemon()
    again.secrets[created["id"]] = created["secret"]
    done = await again.login(created["id"], wait=10)

    assert done["status"] == "succeeded"
    assert done["result"]["token"] == auth.token
    assert len(control_plane.calls) == 1  # never sent again


async def test_an_interrupted_login_the_control_plane_did_not_complete_fails_interrupted(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    first: RunningDaemon = await start_daemon(OAUTH_BRIDGE_SHUTDOWN_GRACE_SECONDS="0.2")
    control_plane.allow("github", f"{first.url}/callback/github")
    _, created = await start_login(first)
    state = query_of(created["auth_url"])["state"]
    control_plane.script.hang = True
    hit = asyncio.create_task(first.hit(urlencode({"code": "c-1", "state": state})))
    await asyncio.wait_for(control_plane.called.wait(), 10)
    first.stop.set()
    await asyncio.wait_for(first.task, 30)
    hit.cancel()
    control_plane.release.set()

    again: RunningDaemon = await start_daemon()
    done = await again.login(created["id"], wait=10)

    assert (done["status"], done["result"]["error"]) == ("failed", "interrupted")
    assert len(control_plane.calls) == 1


async def test_a_restart_with_other_daemon_credentials_never_sends_its_logins_as_them(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    control_plane.add_user(KEY_B, "user-b")
    first: RunningDaemon = await start_daemon()
    created = await first.register("github", "st-made-as-a")
    first.stop.set()
    await asyncio.wait_for(first.task, 30)

    again: RunningDaemon = await start_daemon(LANGSMITH_API_KEY=KEY_B)  # another user now
    again.secrets[created["id"]] = created["secret"]
    await again.hit(urlencode({"code": "c-a", "state": "st-made-as-a"}))
    done = await again.login(created["id"])

    assert control_plane.calls == []
    assert (done["status"], done["result"]["error"]) == ("failed", "credentials_lost")
