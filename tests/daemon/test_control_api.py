"""The control API on control.sock, as the contract says."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble


async def call(bridge: RunningDaemon, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with bridge.control.request(method, f"http://bridge{path}", **kw) as response:
        return response.status, await response.json()


async def test_registering_the_same_state_twice_is_409(bridge: RunningDaemon) -> None:
    await bridge.register("github", "dup")

    status, body = await call(
        bridge, "POST", "/v1/logins", json={"provider_id": "google", "state": "dup"}
    )

    assert (status, body["error"]) == (409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"state": "s"},
        {"provider_id": "github"},
        {"provider_id": "", "state": "s"},
        {"provider_id": "a/b", "state": "s"},
        {"provider_id": ".", "state": "s"},
        {"provider_id": "..", "state": "s"},
        {"provider_id": "github", "state": ""},
        {"provider_id": "github", "state": "s", "ttl_seconds": 3601},
        {"provider_id": "github", "state": "s", "ttl_seconds": 0},
        {"provider_id": "github", "state": "s", "surprise": 1},
        [],
    ],
)
async def test_an_invalid_registration_is_422_with_detail(bridge: RunningDaemon, body: Any) -> None:
    status, answer = await call(bridge, "POST", "/v1/logins", json=body)

    assert status == 422
    assert answer["detail"]


async def test_a_non_json_registration_is_422(bridge: RunningDaemon) -> None:
    status, _ = await call(bridge, "POST", "/v1/logins", data=b"{not json")
    assert status == 422


async def test_ttl_defaults_to_600_seconds(bridge: RunningDaemon) -> None:
    login = await bridge.register("github", "ttl")
    created = login["created_at"]
    expires = login["expires_at"]
    from datetime import datetime

    span = datetime.fromisoformat(expires) - datetime.fromisoformat(created)
    assert span.total_seconds() == 600


async def test_the_pending_limit_is_answered_with_503(
    start_daemon: Any, control_plane: ControlPlaneDouble
) -> None:
    running: RunningDaemon = await start_daemon(OAUTH_BRIDGE_PENDING_LIMIT="2")
    await running.register("github", "a")
    await running.register("github", "b")

    status, body = await call(
        running, "POST", "/v1/logins", json={"provider_id": "github", "state": "c"}
    )

    assert (status, body["error"]) == (503, "too_many_pending")
    # A finished login frees its place.
    await running.hit("code=x&state=a")
    assert (
        await running.control.post(
            "http://bridge/v1/logins", json={"provider_id": "github", "state": "c"}
        )
    ).status == 201


async def test_an_unknown_id_is_404(bridge: RunningDaemon) -> None:
    assert (await call(bridge, "GET", "/v1/logins/nope"))[0] == 404
    assert (await call(bridge, "DELETE", "/v1/logins/nope"))[0] == 404


async def test_wait_returns_as_soon_as_the_login_is_terminal(bridge: RunningDaemon) -> None:
    login = await bridge.register("github", "w")
    waiter = asyncio.create_task(bridge.login(login["id"], wait=300))
    await asyncio.sleep(0)

    await bridge.hit("code=c&state=w")

    assert (await asyncio.wait_for(waiter, 5))["status"] == "succeeded"


async def test_wait_answers_pending_when_it_runs_out(bridge: RunningDaemon) -> None:
    login = await bridge.register("github", "w2")
    assert (await bridge.login(login["id"], wait=0.05))["status"] == "pending"


@pytest.mark.parametrize("wait", ["-1", "soon", "nan"])
async def test_a_bad_wait_is_422(bridge: RunningDaemon, wait: str) -> None:
    login = await bridge.register("github", "w3")
    assert (await call(bridge, "GET", f"/v1/logins/{login['id']}?wait={wait}"))[0] == 422


async def test_cancel_makes_the_login_cancelled_and_wakes_waiters(bridge: RunningDaemon) -> None:
    login = await bridge.register("github", "c")
    waiter = asyncio.create_task(bridge.login(login["id"], wait=300))
    await asyncio.sleep(0)

    status, body = await call(bridge, "DELETE", f"/v1/logins/{login['id']}")

    assert (status, body["status"]) == (200, "cancelled")
    assert (await asyncio.wait_for(waiter, 5))["status"] == "cancelled"
    again, _ = await call(bridge, "DELETE", f"/v1/logins/{login['id']}")
    assert again == 409


async def test_a_cancelled_login_is_not_forwarded(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "c2")
    await call(bridge, "DELETE", f"/v1/logins/{login['id']}")

    _, page, _ = await bridge.hit("code=x&state=c2")

    assert 'content="cancelled"' in page
    assert control_plane.calls == []


async def test_list_holds_every_login_and_never_a_state(bridge: RunningDaemon) -> None:
    await bridge.register("github", "secret-state-1")
    await bridge.register("google", "secret-state-2")

    status, body = await call(bridge, "GET", "/v1/logins")

    assert status == 200
    assert [login["provider_id"] for login in body["logins"]] == ["github", "google"]
    assert "secret-state" not in str(body)


async def test_paste_fallback_completes_a_login_through_the_same_path(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    login = await bridge.register("github", "p")
    url = f"{bridge.url}/callback/github?code=pasted&state=p"

    status, body = await call(bridge, "POST", "/v1/callbacks", json={"url": url})
    again, body2 = await call(bridge, "POST", "/v1/callbacks", json={"url": url})

    assert (200, "succeeded", login["id"]) == (status, body["status"], body["id"])
    assert (again, body2["status"]) == (200, "succeeded")
    assert [c.body for c in control_plane.calls] == [{"code": "pasted", "state": "p"}]


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "http://evil.example/callback/github?code=c&state=p",
        "http://127.0.0.1:1/callback/github?code=c&state=p",
        "http://127.0.0.1:{port}/elsewhere?code=c&state=p",
        "https://127.0.0.1:{port}/callback/github?code=c&state=p",
        "http://127.0.0.1:{port}/callback/github?code=c&code=d&state=p",
        "http://127.0.0.1:{port}/callback/github?state=p",
    ],
)
async def test_paste_of_a_bad_url_is_400_and_consumes_nothing(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, url: str
) -> None:
    login = await bridge.register("github", "p")

    status, body = await call(
        bridge, "POST", "/v1/callbacks", json={"url": url.format(port=bridge.port)}
    )

    assert (status, body["error"]) == (400, "bad_url")
    assert control_plane.calls == []
    assert (await bridge.login(login["id"]))["status"] == "pending"


async def test_paste_with_no_matching_login_is_404(bridge: RunningDaemon) -> None:
    status, _ = await call(
        bridge,
        "POST",
        "/v1/callbacks",
        json={"url": f"{bridge.url}/callback/github?code=c&state=zz"},
    )
    assert status == 404


async def test_the_control_socket_and_runtime_dir_are_the_users_alone(
    bridge: RunningDaemon,
) -> None:
    assert stat.S_IMODE(os.stat(bridge.paths.control_socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(bridge.paths.runtime_dir).st_mode) == 0o700


async def test_a_peer_of_another_uid_is_refused(bridge: RunningDaemon) -> None:
    """SO_PEERCRED: a process of another user that reached the socket gets 403."""
    if os.getuid() != 0:
        pytest.fail("this test needs root to connect as another uid (CI runs as root)")
    # Open the way for uid 65534 (the daemon's own checks of the dir are at start-up).
    opened = [bridge.paths.control_socket, *bridge.paths.control_socket.parents]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in opened}
    for p in opened[1:]:
        os.chmod(p, modes[p] | 0o001)
    os.chmod(bridge.paths.control_socket, 0o666)  # noqa: S103  # the test opens it on purpose
    script = (
        "import os, socket\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"s = socket.socket(socket.AF_UNIX); s.connect({str(bridge.paths.control_socket)!r})\n"
        "s.sendall(b'GET /v1/logins HTTP/1.1\\r\\nHost: bridge\\r\\nConnection: close\\r\\n\\r\\n')\n"
        "print(s.recv(100).split(b' ')[1].decode())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "python3", "-c", script, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    for p, mode in modes.items():
        os.chmod(p, mode)

    assert out.decode().strip() == "403"


async def test_status_describes_the_daemon_without_secrets(bridge: RunningDaemon) -> None:
    await bridge.register("github", "status-state")

    status, body = await call(bridge, "GET", "/v1/status")

    assert status == 200
    assert (os.getpid(), bridge.url, 1) == (body["pid"], body["url"], body["pending"])
    text = str(body)
    for secret in ("status-state", "test-api-key", "test-bearer"):
        assert secret not in text


async def test_control_api_is_unreachable_over_tcp_even_with_a_unix_host(
    bridge: RunningDaemon,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{bridge.url}/v1/status", headers={"Host": "bridge"}) as response,
    ):
        assert response.status == 421


async def test_a_wait_above_300_seconds_is_clamped(
    bridge: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = await bridge.register("github", "st-clamp")
    logins = bridge.services.logins
    asked: list[float] = []

    async def spy(login_id: str, seconds: float) -> Any:
        asked.append(seconds)
        return logins.get(login_id)

    monkeypatch.setattr(logins, "wait_terminal", spy)

    await bridge.login(login["id"], wait=1000)

    assert asked == [300.0]


async def test_a_repeated_paste_waits_for_the_running_forward(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-paste2")
    url = f"{bridge.url}/callback/github?code=c&state=st-paste2"
    control_plane.script.hang = True
    first = asyncio.create_task(call(bridge, "POST", "/v1/callbacks", json={"url": url}))
    await asyncio.wait_for(control_plane.called.wait(), 5)
    second = asyncio.create_task(call(bridge, "POST", "/v1/callbacks", json={"url": url}))
    await asyncio.sleep(0.05)  # let the repeat reach its wait; the outcome is the test

    control_plane.release.set()
    answers = await asyncio.gather(first, second)

    assert [(status, body["status"]) for status, body in answers] == [(200, "succeeded")] * 2
    assert len(control_plane.calls) == 1


async def test_a_repeated_state_names_the_login_it_collides_with(bridge: RunningDaemon) -> None:
    first = await bridge.register("github", "dup-hint")

    status, body = await call(
        bridge, "POST", "/v1/logins", json={"provider_id": "github", "state": "dup-hint"}
    )

    assert status == 409
    assert f"login {first['id']} (github, pending)" in body["message"]
    assert f"oauth-bridge cancel {first['id']}" in body["message"]
    assert body["login"]["id"] == first["id"]
