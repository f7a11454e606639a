"""A real second local user: its requests are refused, its sockets are found to be its own.

The tests need root (CI runs as root) to create that user and to run a process as it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from bridge.netowner import GONE, connection_owner, listener_owner
from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_agent_auth import query_of, start_login
from tests.daemon.test_same_user import FORBIDDEN_PAGE, fetch, guarded_app

CALLBACK = "/callback/github?code=c&state=s"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int

    def command(self, script: str, *args: str) -> list[str]:
        """Run ``script`` in a Python that is this user before it opens any socket."""
        # The interpreter may be where this user cannot go (/root/.pyenv): it starts as
        # root, imports what the scripts use (the user could not read the modules), then
        # becomes the user for good (real, effective and saved ids, no groups), as
        # setpriv --reuid --regid --clear-groups would have made it.
        become = (
            "import os, sys, socket, http.client, encodings.idna\n"
            f"os.setgroups([]); os.setgid({self.gid}); os.setuid({self.uid})\n"
            f"assert (os.getuid(), os.geteuid(), os.getgid()) == ({self.uid},) * 2 + ({self.gid},)\n"
        )
        return [sys.executable, "-I", "-c", become + script, *args]


def run_until_unlocked(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run useradd or userdel, again while another test holds the lock on /etc/passwd."""
    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if result.returncode == 0 or "lock" not in result.stderr or time.monotonic() > deadline:
            return result
        time.sleep(0.05)  # a poll, bounded by the deadline


@pytest.fixture
def other_user() -> Iterator[User]:
    """A system user of its own for this test, removed afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root to create a second user and run as it (CI runs as root)")
    name = f"obtest-{secrets.token_hex(4)}"
    try:
        made = run_until_unlocked(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
        )
        assert made.returncode == 0, f"useradd failed: {made.stderr}"
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        removed = run_until_unlocked(["userdel", "--force", name])
        assert removed.returncode in (0, 6), f"userdel failed: {removed.stderr}"  # 6: none


async def run_as(user: User, script: str, *args: str) -> list[str]:
    """Run ``script`` as ``user`` to its end; return its output's words."""
    proc = await asyncio.create_subprocess_exec(
        *user.command(script, *args),
        cwd="/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().split()


GET_AS_USER = (
    "import http.client\n"
    "connection = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10)\n"
    "connection.request('GET', sys.argv[2])\n"
    "answer = connection.getresponse()\n"
    "page = answer.read().decode()\n"
    "print(os.getuid(), answer.status, 'forbidden' if 'content=\"forbidden\"' in page else '-')\n"
)


async def test_another_users_callback_is_refused_and_roots_is_served(other_user: User) -> None:
    async with guarded_app() as app:
        theirs = await run_as(other_user, GET_AS_USER, str(app.port), CALLBACK)
        their_health = await run_as(other_user, GET_AS_USER, str(app.port), "/healthz")
        ours = await fetch(app.port, CALLBACK)

    assert theirs == [str(other_user.uid), "403", "forbidden"]
    assert their_health == [str(other_user.uid), "200", "-"]  # it does reach the app
    assert (ours.status, ours.body) == (200, "served\n")
    assert ours.body != FORBIDDEN_PAGE
    assert app.refused == ["/callback/github"]
    assert app.served == ["/healthz", "/callback/github"]


async def test_a_daemon_of_that_user_serves_it(other_user: User) -> None:
    async with guarded_app(uid=other_user.uid) as app:
        theirs = await run_as(other_user, GET_AS_USER, str(app.port), CALLBACK)

    assert theirs == [str(other_user.uid), "200", "-"]
    assert app.refused == []


async def test_another_user_that_hangs_up_after_its_request_is_refused(other_user: User) -> None:
    # Its socket would read as uid 0 (time-wait) by the time the daemon looks: the gate
    # holds the request until the sender has closed and exited.
    send_and_leave = (
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "s.sendall(sys.argv[2].encode()); s.close(); print(os.getuid())\n"
    )
    request = f"GET {CALLBACK} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    gate = asyncio.Event()
    async with guarded_app(gate=gate) as app:
        said = await run_as(other_user, send_and_leave, str(app.port), request)
        gate.set()
        await app.next_decision()

    assert said == [str(other_user.uid)]
    assert app.refused == ["/callback/github"]
    assert app.served == []


class Held:
    """A process of the other user that holds one socket until its stdin closes."""

    def __init__(self, user: User, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            user.command(script + "sys.stdin.read()\n", *args),
            cwd="/",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.said = self.proc.stdout.readline().split()  # the socket is open by then

    def __enter__(self) -> Held:
        if not self.said:
            self.close()
            pytest.fail("the other user's process said nothing (its stderr is above)")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the process (its sockets close with it) and wait until it has ended."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()


@pytest.fixture
def their_listener(other_user: User) -> Iterator[int]:
    """The port of a listener on 127.0.0.1 that the other user holds."""
    script = "s = socket.create_server(('127.0.0.1', 0))\nprint(s.getsockname()[1], flush=True)\n"
    with Held(other_user, script) as held:
        yield int(held.said[0])


def test_another_users_listener_is_theirs(other_user: User, their_listener: int) -> None:
    assert listener_owner(their_listener) == other_user.uid
    assert listener_owner(their_listener, host="::1") is None  # they bound 127.0.0.1 only


def test_the_far_end_of_another_users_connection_is_theirs_until_they_leave(
    other_user: User,
) -> None:
    script = (
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "print(s.getsockname()[1], flush=True)\n"
    )
    server = socket.create_server(("127.0.0.1", 0))
    with server, Held(other_user, script, str(server.getsockname()[1])) as held:
        accepted, peer = server.accept()
        with accepted:
            local, remote = accepted.getsockname(), accepted.getpeername()
            while_held = connection_owner(local, remote)
            held.close()  # its socket closes as the process ends: uid 0 in time-wait

            after = connection_owner(local, remote)

    assert peer[1] == int(held.said[0])
    assert while_held == other_user.uid
    assert after == GONE


async def test_another_user_can_neither_spend_the_trampoline_nor_consume_the_state(
    other_user: User, bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")
    _, created = await start_login(bridge)
    go = created["open_url"].removeprefix(bridge.url)
    state = query_of(created["auth_url"])["state"]
    callback = f"/callback/github?{urlencode({'code': 'theirs', 'state': state})}"

    at_go = await run_as(other_user, GET_AS_USER, str(bridge.port), go)
    at_callback = await run_as(other_user, GET_AS_USER, str(bridge.port), callback)
    async with bridge.browser.get(f"{bridge.url}{go}", allow_redirects=False) as jump:
        ours_at_go = (jump.status, jump.headers.get("Location"))
    ours, _, _ = await bridge.hit(urlencode({"code": "ours", "state": state}))
    done = await bridge.login(created["id"], wait=10)

    assert at_go == [str(other_user.uid), "403", "forbidden"]
    assert at_callback == [str(other_user.uid), "403", "forbidden"]
    assert ours_at_go == (302, created["auth_url"])  # still unspent for its owner
    assert ours == 200
    assert done["status"] == "succeeded"
    assert [c.body["code"] for c in control_plane.calls] == ["ours"]


GET_FROM_SOURCE_AS_USER = (
    "import http.client\n"
    "connection = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10,"
    " source_address=(sys.argv[3], 0))\n"
    "connection.request('GET', sys.argv[2])\n"
    "answer = connection.getresponse()\n"
    "page = answer.read().decode()\n"
    "print(os.getuid(), answer.status, 'forbidden' if 'content=\"forbidden\"' in page else '-')\n"
)


@pytest.fixture
def non_loopback_address() -> Iterator[str]:
    """An address of this machine that is not loopback, from which it can reach 127.0.0.1."""
    found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    ipv4 = [a for a in found.stdout.split() if "." in a]
    if ipv4:
        yield ipv4[0]
        return
    # None here (a bare namespace): one of the benchmarking range, on lo, for this test.
    added = "198.18.0.77"
    subprocess.run(["ip", "addr", "add", f"{added}/32", "dev", "lo"], check=True, timeout=10)
    try:
        yield added
    finally:
        subprocess.run(["ip", "addr", "del", f"{added}/32", "dev", "lo"], check=False, timeout=10)


async def test_another_user_from_a_non_loopback_source_is_refused_too(
    other_user: User,
    bridge: RunningDaemon,
    control_plane: ControlPlaneDouble,
    non_loopback_address: str,
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")
    _, created = await start_login(bridge)
    go = created["open_url"].removeprefix(bridge.url)
    state = query_of(created["auth_url"])["state"]
    callback = f"/callback/github?{urlencode({'code': 'theirs', 'state': state})}"

    at_go = await run_as(
        other_user, GET_FROM_SOURCE_AS_USER, str(bridge.port), go, non_loopback_address
    )
    at_callback = await run_as(
        other_user, GET_FROM_SOURCE_AS_USER, str(bridge.port), callback, non_loopback_address
    )
    after = await bridge.login(created["id"])

    assert at_go == [str(other_user.uid), "403", "forbidden"]
    assert at_callback == [str(other_user.uid), "403", "forbidden"]
    assert (after["status"], after["browser_seen"]) == ("pending", False)
    assert control_plane.calls == []
