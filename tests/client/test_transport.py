"""The control socket's HTTP, spoken by the tools' side: blocking and asyncio, same answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bridge.client.transport import AsyncControlClient, ControlClient, decode_answer
from bridge.errors import DaemonUnavailable
from tests.conftest import RunningDaemon

StartDaemon = Callable[..., Awaitable[RunningDaemon]]


async def test_the_async_client_registers_and_reads_a_login(start_daemon: StartDaemon) -> None:
    bridge = await start_daemon()
    client = AsyncControlClient(bridge.paths.control_socket)

    created = await client.request("POST", "/v1/logins", {"provider_id": "github", "state": "s1"})
    shown = await client.request("GET", f"/v1/logins/{created.body['id']}")

    assert (created.status, shown.status) == (201, 200)
    assert shown.body == {k: v for k, v in created.body.items() if k != "secret"}


async def test_both_clients_read_a_refusal_and_its_message(start_daemon: StartDaemon) -> None:
    bridge = await start_daemon()

    # In a thread: the daemon runs on this test's event loop.
    blocking = await asyncio.to_thread(
        ControlClient(bridge.paths.control_socket).request, "GET", "/v1/logins/nope"
    )
    awaited = await AsyncControlClient(bridge.paths.control_socket).request(
        "GET", "/v1/logins/nope"
    )

    assert (blocking.status, blocking.message) == (404, "no login has this id")
    assert (awaited.status, awaited.message) == (404, "no login has this id")


async def test_no_daemon_is_daemon_unavailable_for_both(tmp_path: Path) -> None:
    missing = tmp_path / "control.sock"

    with pytest.raises(DaemonUnavailable, match="no oauth-bridge daemon answers"):
        ControlClient(missing).request("GET", "/v1/status")
    with pytest.raises(DaemonUnavailable, match="no oauth-bridge daemon answers"):
        await AsyncControlClient(missing).request("GET", "/v1/status")


def test_a_chunked_answer_is_read_whole() -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"a":\r\n3;ext=1\r\n 1}\r\n0\r\n\r\n'
    )

    answer = decode_answer(raw)

    assert (answer.status, answer.body) == (200, {"a": 1})


@pytest.mark.parametrize("raw", [b"", b"garbage", b"HTTP/1.1 abc\r\n\r\n", b"SSH-2.0\r\n\r\n"])
def test_what_is_not_http_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not an HTTP"):
        decode_answer(raw)


def test_a_body_that_is_not_json_reads_as_none_with_the_status_as_message() -> None:
    answer = decode_answer(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\noops")

    assert (answer.body, answer.message) == (None, "HTTP 502")
