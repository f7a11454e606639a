"""The same-user middleware on an app of its own: who is refused, who served, what is logged."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.daemon import same_user
from bridge.daemon.same_user import CannotTell, Lookup, own_user_only
from bridge.netowner import GONE, connection_owner

DAEMON_UID = 1000
OTHER_UID = 1001
FORBIDDEN_PAGE = (
    '<!doctype html><meta name="oauth-bridge-status" content="forbidden"><title>403</title>\n'
)


@dataclass
class Guarded:
    """A three-route app behind the middleware, and what became of each request."""

    port: int
    served: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    decided: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_decision(self) -> None:
        async with asyncio.timeout(10):
            await self.decided.wait()
        self.decided.clear()


@asynccontextmanager
async def guarded_app(
    *,
    uid: int | None = None,
    lookup: Lookup = connection_owner,
    unix_path: Path | None = None,
    gate: asyncio.Event | None = None,
) -> AsyncIterator[Guarded]:
    """Serve the app on 127.0.0.1 (or a UNIX socket) until the block ends.

    A ``gate`` holds each request before the middleware until it is set.
    """
    guarded = Guarded(port=0)

    @web.middleware
    async def held(request: web.Request, handler: Handler) -> web.StreamResponse:
        if gate is not None:
            await gate.wait()
        return await handler(request)

    def refuse(request: web.Request) -> web.Response:
        guarded.refused.append(request.path)
        guarded.decided.set()
        return web.Response(status=403, text=FORBIDDEN_PAGE, content_type="text/html")

    async def handler(request: web.Request) -> web.Response:
        await request.read()  # what a callback does with a form: consume it
        guarded.served.append(request.path)
        guarded.decided.set()
        return web.Response(text="served\n")

    app = web.Application(middlewares=[held, own_user_only(refuse=refuse, uid=uid, lookup=lookup)])
    app.router.add_route("*", "/callback/{provider_id}", handler)
    app.router.add_get("/go/{token}", handler)
    app.router.add_get("/healthz", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site: web.BaseSite
        if unix_path is None:
            site = web.TCPSite(runner, "127.0.0.1", 0)
        else:
            site = web.UnixSite(runner, str(unix_path))
        await site.start()
        if unix_path is None:
            guarded.port = runner.addresses[0][1]
        yield guarded
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    client: tuple[str, int]


def request_bytes(path: str, *, method: str = "GET", body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    if body:
        head += (
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        )
    return head.encode() + b"\r\n" + body


async def fetch(
    port: int, path: str, *, method: str = "GET", body: bytes = b"", unix_path: Path | None = None
) -> Answer:
    """Send one request and read the whole answer, knowing which port the client had."""
    async with asyncio.timeout(10):
        if unix_path is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            reader, writer = await asyncio.open_unix_connection(str(unix_path))
        client = writer.get_extra_info("sockname")
        writer.write(request_bytes(path, method=method, body=body))
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    head, _, text = answer.decode().partition("\r\n\r\n")
    return Answer(int(head.split()[1]), text, client if isinstance(client, tuple) else ("", 0))


def saying(uid: int | None, calls: list[tuple[tuple[str, int], tuple[str, int]]]) -> Lookup:
    """A lookup that answers ``uid`` for every connection and records what it was asked."""

    def lookup(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
        calls.append((local, remote))
        return uid

    return lookup


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test as a daemon that has warned of nothing yet."""
    monkeypatch.setattr(CannotTell, "warned", False)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == same_user.__name__ and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("path", ["/callback/github?code=c&state=s", "/go/some-token"])
async def test_another_users_request_is_refused_before_its_handler(path: str) -> None:
    async with guarded_app(uid=DAEMON_UID, lookup=saying(OTHER_UID, [])) as app:
        answer = await fetch(app.port, path)

    assert (answer.status, answer.body) == (403, FORBIDDEN_PAGE)
    assert app.served == []
    assert app.refused == [path.partition("?")[0]]


async def test_another_users_posted_form_is_refused_unread() -> None:
    async with guarded_app(uid=DAEMON_UID, lookup=saying(OTHER_UID, [])) as app:
        answer = await fetch(app.port, "/callback/github", method="POST", body=b"code=c&state=s")

    assert answer.status == 403
    assert app.served == []


@pytest.mark.parametrize("owner", [DAEMON_UID, 0], ids=["own-user", "root"])
async def test_the_daemons_user_and_root_are_served(owner: int) -> None:
    async with guarded_app(uid=DAEMON_UID, lookup=saying(owner, [])) as app:
        answer = await fetch(app.port, "/callback/github?code=c&state=s")

    assert (answer.status, answer.body) == (200, "served\n")
    assert app.refused == []


async def test_a_sender_that_is_gone_is_refused() -> None:
    async with guarded_app(uid=DAEMON_UID, lookup=saying(GONE, [])) as app:
        answer = await fetch(app.port, "/callback/github?code=c&state=s")

    assert answer.status == 403
    assert app.served == []


async def test_the_lookup_is_asked_about_the_connections_two_ends() -> None:
    calls: list[tuple[tuple[str, int], tuple[str, int]]] = []
    async with guarded_app(uid=DAEMON_UID, lookup=saying(DAEMON_UID, calls)) as app:
        answer = await fetch(app.port, "/callback/github")

    assert calls == [(("127.0.0.1", app.port), answer.client)]


@pytest.mark.parametrize("path", ["/healthz", "/resultx", "/callbackx", "/go"])
async def test_other_paths_are_not_looked_up(path: str) -> None:
    calls: list[tuple[tuple[str, int], tuple[str, int]]] = []
    async with guarded_app(uid=DAEMON_UID, lookup=saying(OTHER_UID, calls)) as app:
        answer = await fetch(app.port, path)

    assert answer.status in (200, 404)
    assert calls == []
    assert app.refused == []


async def test_an_encoded_path_is_guarded_as_it_is_routed() -> None:
    async with guarded_app(uid=DAEMON_UID, lookup=saying(OTHER_UID, [])) as app:
        answer = await fetch(app.port, "/%63allback/github?code=c&state=s")

    assert answer.status == 403
    assert app.served == []


async def test_a_sender_that_cannot_be_told_is_served_with_one_warning_for_the_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=same_user.__name__)
    answers = []
    for _ in range(2):  # two apps: a daemon that builds its app again warns no more
        async with guarded_app(uid=DAEMON_UID, lookup=saying(None, [])) as app:
            answers.append(await fetch(app.port, "/callback/github?code=c&state=s"))
            answers.append(await fetch(app.port, "/go/token"))

    assert [a.status for a in answers] == [200, 200, 200, 200]
    said = warnings_of(caplog)
    assert len(said) == 1
    assert "cannot tell which local user" in said[0]
    assert "serving as before" in said[0]


async def test_a_unix_socket_cannot_be_told_and_is_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=same_user.__name__)
    calls: list[tuple[tuple[str, int], tuple[str, int]]] = []
    path = tmp_path / "app.sock"
    async with guarded_app(uid=DAEMON_UID, lookup=saying(OTHER_UID, calls), unix_path=path):
        answer = await fetch(0, "/callback/github", unix_path=path)

    assert answer.status == 200
    assert calls == []
    assert len(warnings_of(caplog)) == 1


async def test_the_real_lookup_finds_our_own_uid() -> None:
    found: list[int | None] = []

    def recording(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
        found.append(connection_owner(local, remote))
        return found[-1]

    async with guarded_app(lookup=recording) as app:
        answer = await fetch(app.port, "/callback/github?code=c&state=s")

    assert found == [os.geteuid()]
    assert answer.status == 200


async def test_a_sender_that_hangs_up_after_its_request_is_refused() -> None:
    # Root's too: its socket then reads as uid 0 in /proc/net/tcp whoever it was (a
    # time-wait entry), or the connection is gone; either way nobody can be told.
    gate = asyncio.Event()
    async with guarded_app(gate=gate) as app:
        _reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
        writer.write(request_bytes("/callback/github?code=c&state=s"))
        writer.close()
        await writer.wait_closed()
        gate.set()
        await app.next_decision()

    assert app.refused == ["/callback/github"]
    assert app.served == []


async def test_refusals_are_logged_without_the_address_and_at_most_one_a_second(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger=same_user.__name__)
    monkeypatch.setattr(same_user, "REFUSAL_LOG_INTERVAL_SECONDS", 3600.0)
    async with guarded_app(uid=DAEMON_UID, lookup=saying(OTHER_UID, [])) as app:
        for _ in range(3):
            assert (await fetch(app.port, "/go/secret-token?x=secret-query")).status == 403
        first = warnings_of(caplog)
        monkeypatch.setattr(same_user, "REFUSAL_LOG_INTERVAL_SECONDS", 0.0)
        assert (await fetch(app.port, "/callback/github?code=secret-code")).status == 403

    said = warnings_of(caplog)
    assert first == [f"refused a request for /go/... from uid {OTHER_UID}, not this daemon's user"]
    assert said[1:] == [
        f"refused a request for /callback/... from uid {OTHER_UID}, not this daemon's user;"
        " 2 more since the last such line"
    ]
    assert "secret" not in caplog.text


async def test_a_kept_alive_connection_is_looked_up_once_and_a_new_one_again() -> None:
    import aiohttp

    calls: list[tuple[tuple[str, int], tuple[str, int]]] = []
    async with guarded_app(uid=DAEMON_UID, lookup=saying(DAEMON_UID, calls)) as app:
        async with aiohttp.ClientSession() as browser:  # one kept-alive connection
            for _ in range(3):
                async with browser.get(f"http://127.0.0.1:{app.port}/callback/github") as r:
                    assert r.status == 200
        async with (
            aiohttp.ClientSession() as another,
            another.get(f"http://127.0.0.1:{app.port}/go/x") as r,
        ):
            assert r.status in (200, 404)

    assert len(calls) == 2  # one a connection, not one a request
