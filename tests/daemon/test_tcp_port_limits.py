"""The TCP port under abuse: its own pages for what it refuses, caps, and a quiet log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

import aiohttp
import pytest

from bridge.client.transport import ControlClient
from bridge.daemon.lifecycle import MAX_BODY_BYTES, MAX_CONNECTIONS
from bridge.paths import Paths
from tests.conftest import DaemonProcess, RunningDaemon, wait_for, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_flow import meta_status

StartDaemon = Callable[..., DaemonProcess]


def exchange(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send ``payload`` on a new connection; return all it answers until it closes."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # closed with some of our request unread: what came before still counts
    return answer


def split(answer: bytes) -> tuple[int, dict[str, str], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body.decode("utf-8", "replace")


def assert_our_page(answer: bytes, status: int, page_status: str) -> str:
    got, headers, page = split(answer)
    assert got == status, answer[:300]
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert headers["server"].startswith("oauth-bridge/")
    assert meta_status(page) == page_status
    return page


def bad_encodings(port: int) -> list[bytes]:
    """Requests whose Content-Encoding the body does not have, or that aiohttp cannot decode."""
    host = f"Host: 127.0.0.1:{port}\r\n"
    form = "Content-Type: application/x-www-form-urlencoded\r\n"
    body = b"code=c&state=s-enc"
    requests = []
    for method, target, encoding in [
        ("POST", "/callback/github", "gzip"),  # the handler reads the form: cannot
        ("GET", "/callback/github?code=c&state=s-enc", "gzip"),  # aiohttp drains it after
        ("GET", "/healthz", "deflate"),  # the parser fails at the end of the body
        ("POST", "/callback/github", "br"),  # no decoder at all: fails at the head
        ("POST", "/callback/github", "zstd"),
    ]:
        head = f"{method} {target} HTTP/1.1\r\n{host}{form}Content-Encoding: {encoding}\r\n"
        requests.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return requests


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG], ids=["info", "debug"])
async def test_bad_content_encodings_log_no_traceback_and_at_most_a_short_line(
    bridge: RunningDaemon, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    requests = bad_encodings(bridge.port) * 10  # 50 requests

    with caplog.at_level(level):
        # The daemon logs what it logs of a connection before it closes it: each answer,
        # read to its EOF, comes after that connection's log lines.
        answers = [await asyncio.to_thread(exchange, bridge.port, r) for r in requests]

    assert all(a.startswith(b"HTTP/1.") for a in answers), [a[:40] for a in answers]
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    server_lines = [r for r in caplog.records if r.name.startswith("aiohttp.server")]
    if level == logging.INFO:
        assert server_lines == []
    else:
        # At most one line a second, each one short.
        assert len(server_lines) <= 3, [r.getMessage() for r in server_lines]
        assert all(len(r.getMessage()) < 200 for r in server_lines)
    assert len(caplog.text) < 50 * 100  # the access log at debug: one short line a request


@pytest.mark.parametrize(
    "garbage",
    [
        b"BLAH\r\n\r\n",
        b"GET /x\x00y HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),  # a TLS ClientHello
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx",
    ],
    ids=["not-a-method", "nul-in-path", "bad-length", "tls", "no-decoder"],
)
async def test_a_request_aiohttp_cannot_parse_gets_our_invalid_page(
    bridge: RunningDaemon, garbage: bytes
) -> None:
    answer = await asyncio.to_thread(exchange, bridge.port, garbage)

    page = assert_our_page(answer, 400, "invalid")
    assert "could not read" in page
    assert split(answer)[1]["connection"] == "close"


async def test_a_body_larger_than_the_cap_gets_a_413_page_before_it_is_read(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    await bridge.register("github", "st-big")
    head = (
        f"POST /callback/github HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
    )
    declared = f"{head}Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\ncode=c&state=st-big&".encode()
    # Chunked: no length to refuse up front, so the form read stops at the cap.
    piece = b"code=c&state=st-big&pad=" + b"a" * (MAX_BODY_BYTES + 16)
    chunked = (
        f"{head}Transfer-Encoding: chunked\r\n\r\n{len(piece):x}\r\n".encode() + piece + b"\r\n"
    )

    answers = [await asyncio.to_thread(exchange, bridge.port, r) for r in (declared, chunked)]

    for answer in answers:
        page = assert_our_page(answer, 413, "invalid")
        assert "64 KiB" in page
    assert control_plane.calls == []


async def test_past_the_connection_cap_a_connection_gets_a_503_page_and_then_one_is_served(
    bridge: RunningDaemon,
) -> None:
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            _, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            writer.write(b"GET /healthz HTTP/1.1\r\n")  # half a head, then nothing
            held.append(writer)
        server = bridge.daemon.browser_server
        assert server is not None
        await asyncio.to_thread(
            wait_for, lambda: len(server.connections) == MAX_CONNECTIONS, what="all accepted"
        )
        healthz = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{bridge.port}\r\n\r\n".encode()

        answer = await asyncio.to_thread(exchange, bridge.port, healthz)

        page = assert_our_page(answer, 503, "pending")
        assert "Reload this page" in page
        assert split(answer)[1]["retry-after"] == "1"
    finally:
        for writer in held:
            writer.close()
    await asyncio.to_thread(
        wait_for, lambda: len(server.connections) == 0, what="the held connections to close"
    )
    async with bridge.browser.get(f"{bridge.url}/healthz") as response:
        assert response.status == 200


# -- a flood of stalled bodies, against the daemon as a process ------------------------

FLOOD_CONNECTIONS = 300
FLOOD_DECLARED = 1 << 20  # what each request says it will send...
FLOOD_SENT = 64 << 10  # ...and what it sends before it stalls
# Unbounded, the daemon buffered what each connection sent and kept it: 40 MB more for
# this flood, all of it still held after the connections closed (1.29 GB for 1000
# connections of 1 MB, 1.04 GB of it after). Capped: 11-13 MB at the peak, 3 MB after.
RSS_GROWTH_BOUND_MB = 20
RSS_AFTER_BOUND_MB = 8


def vm_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def flood(port: int, pid: int) -> tuple[float, list[bytes]]:
    """Open the flood's connections, let them stall, watch RSS; return its peak and answers."""
    head = (
        f"POST /callback/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {FLOOD_DECLARED}\r\n\r\n"
    ).encode()
    body = b"a" * FLOOD_SENT
    sockets: list[socket.socket] = []
    peak = 0.0
    try:
        for _ in range(FLOOD_CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            with contextlib.suppress(OSError):  # answered and closed already
                sock.send(head + body)  # as much as the kernel takes at once: then stall
            sockets.append(sock)
            peak = max(peak, vm_rss_mb(pid))
        # Stalled: watch for a while (bounded) what the daemon holds for them.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            peak = max(peak, vm_rss_mb(pid))
            time.sleep(0.02)
        answers = []
        for sock in sockets:
            sock.settimeout(5)
            try:
                answers.append(sock.recv(64))
            except OSError as exc:
                answers.append(repr(exc).encode())
    finally:
        for sock in sockets:
            sock.close()
    return peak, answers


async def test_a_flood_of_stalled_bodies_keeps_rss_bounded_and_a_callback_works_after(
    daemon_process: StartDaemon, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    proc = daemon_process()
    info = await asyncio.to_thread(wait_ready, proc)
    pid, url = int(info["pid"]), str(info["url"])
    port = int(url.rsplit(":", 1)[1])
    # Warm up what a request costs once (imports, caches): idle is after one callback.
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        assert response.status == 200
    idle = vm_rss_mb(pid)

    peak, answers = await asyncio.to_thread(flood, port, pid)

    assert peak - idle < RSS_GROWTH_BOUND_MB, (idle, peak)
    refused = [a for a in answers if a.startswith((b"HTTP/1.1 413", b"HTTP/1.1 503"))]
    assert len(refused) == FLOOD_CONNECTIONS, {a[:20] for a in answers}
    await asyncio.to_thread(
        wait_for,
        lambda: vm_rss_mb(pid) - idle < RSS_AFTER_BOUND_MB,
        timeout=10,
        what=f"RSS back within {RSS_AFTER_BOUND_MB} MB of idle ({idle:.0f} MB)",
    )
    created = ControlClient(paths.control_socket).request(
        "POST", "/v1/logins", {"provider_id": "github", "state": "st-after"}
    )
    assert created.status == 201, created.body
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/callback/github?code=c&state=st-after") as response,
    ):
        page = await response.text()
    assert (response.status, meta_status(page)) == (200, "succeeded")
    assert len(control_plane.calls) == 1
    assert proc.process.poll() is None
