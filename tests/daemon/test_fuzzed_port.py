"""A hundred thousand fuzzed requests at the TCP port: not one 5xx, and no login consumed.

Requests come from a seeded generator (so a failure can be replayed) over keep-alive
connections to a daemon process: every method, every path the port serves and others,
repeated and broken query parameters, lying Content-Types and Content-Encodings,
chunked bodies good and bad, prefetch headers, wrong Hosts, and a share of requests that
are not HTTP at all.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from urllib.parse import quote

import pytest

from bridge.paths import Paths
from tests.conftest import DaemonProcess, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_daemon_process import get_login, register

REQUESTS = 100_000
WORKERS = 12
SEED = 20261207
REGISTERED = "st-fuzz-registered"


def fuzzed_request(rng: random.Random, host: str) -> tuple[bytes, bool]:
    """Return one request, and whether it is well-formed HTTP (the connection stays)."""
    method = rng.choice(
        ["GET"] * 6 + ["POST"] * 3 + ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "BREW"]
    )
    path = rng.choice(
        [
            "/callback/github",
            "/callback/github",
            "/callback/"
            + quote(rng.choice(["gitlab", "..", "%2e", "a/b", "x" * 300, "ü"]), safe="/%"),
            "/result/" + rng.choice(["-/invalid", "-/unknown", "-/pending", "nope", "%00"]),
            "/",
            "/healthz",
            "/self-test/" + rng.choice(["x", "", "%ff"]),
            "/v1/logins",
            "/" + "".join(rng.choice("abc%/.;~") for _ in range(rng.randint(0, 40))),
        ]
    )
    names = ["code", "state", "error", "error_description", "iss", "x", ""]
    values = [REGISTERED, "c", "", "%", "%zz", "%00", "a&b", "access_denied", "\u00e9", "x" * 500]
    query = "&".join(
        f"{quote(rng.choice(names))}={quote(rng.choice(values))}" for _ in range(rng.randint(0, 5))
    )
    target = path + (f"?{query}" if query or rng.random() < 0.1 else "")
    headers = [
        f"Host: {host if rng.random() < 0.9 else rng.choice(['evil.example', '', 'localhost'])}"
    ]
    if rng.random() < 0.05:
        headers.append(f"Sec-Purpose: {rng.choice(['prefetch', 'prefetch;prerender'])}")
    body = b""
    if method in ("POST", "PUT", "PATCH") or rng.random() < 0.05:
        form = query.encode()
        body = rng.choice(
            [
                form,
                b"\x1f\x8b garbage",
                b"--xx\r\nbroken",
                bytes(rng.randrange(256) for _ in range(40)),
            ]
        )
        headers.append(
            "Content-Type: "
            + rng.choice(
                [
                    "application/x-www-form-urlencoded",
                    "application/x-www-form-urlencoded; charset=bogus",
                    "multipart/form-data",
                    "multipart/form-data; boundary=xx",
                    "application/json",
                    "text/plain",
                ]
            )
        )
        if rng.random() < 0.3:
            headers.append(
                f"Content-Encoding: {rng.choice(['gzip', 'deflate', 'br', 'zstd', 'bogus'])}"
            )
        if rng.random() < 0.2:
            chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
            body = chunked if rng.random() < 0.8 else chunked[:-5]  # some end too early
            headers.append("Transfer-Encoding: chunked")
        else:
            headers.append(f"Content-Length: {len(body)}")
    well_formed = True
    line = f"{method} {target} HTTP/1.1"
    if rng.random() < 0.03:  # not HTTP at all, or broken in its head
        well_formed = False
        line = rng.choice(
            [
                f"{method} /\x00 HTTP/1.1",
                "GARBAGE",
                f"{method} {target} HTTP/9.9",
                "GET / HTTP/1.1\r\nContent-Length: x",
            ]
        )
    head = "\r\n".join([line, *headers]) + "\r\n\r\n"
    if "Transfer-Encoding" in head and not body.endswith(b"0\r\n\r\n"):
        well_formed = False  # the server waits for the rest, then times the connection out
    return head.encode("utf-8", "surrogateescape") + body, well_formed


async def read_status(
    reader: asyncio.StreamReader, method_head: bool
) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if not method_head and "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    return status, headers


async def worker(
    port: int, rng: random.Random, count: int, seen: Counter[int], fives: list[bytes]
) -> None:
    host = f"127.0.0.1:{port}"
    reader = writer = None
    for _ in range(count):
        request, well_formed = fuzzed_request(rng, host)
        if writer is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert reader is not None
        writer.write(request)
        try:
            await writer.drain()
            status, headers = await asyncio.wait_for(
                read_status(reader, request.startswith(b"HEAD ")), 15
            )
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
            status, headers = 0, {}  # the daemon closed a broken connection: fine
        seen[status] += 1
        if status >= 500:
            fives.append(request[:300])
        if status == 0 or not well_formed or headers.get("connection", "").lower() == "close":
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


@pytest.mark.timeout(240)
async def test_a_hundred_thousand_fuzzed_requests_get_no_5xx_and_consume_nothing(
    daemon_process: object, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    proc: DaemonProcess = daemon_process(OAUTH_BRIDGE_CONNECTION_IDLE_SECONDS="2")  # type: ignore[operator]
    info = await asyncio.to_thread(wait_ready, proc)
    port = int(str(info["url"]).rsplit(":", 1)[1])
    login = await asyncio.to_thread(register, paths, REGISTERED, "not-github")
    seen: Counter[int] = Counter()
    fives: list[bytes] = []
    rng = random.Random(SEED)

    await asyncio.gather(
        *(
            worker(port, random.Random(rng.random()), REQUESTS // WORKERS, seen, fives)
            for _ in range(WORKERS)
        )
    )

    assert sum(seen.values()) == REQUESTS // WORKERS * WORKERS
    assert fives == [], f"{len(fives)} answers were 5xx; the first: {fives[:3]}"
    assert seen[200] + seen[303] > 1000  # the fuzz reached the application, not only the parser
    # The one registered login is for another provider: no callback may consume it.
    assert (await asyncio.to_thread(get_login, paths, login["id"]))["status"] == "pending"
    assert control_plane.calls == []
