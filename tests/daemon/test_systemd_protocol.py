"""Socket activation and sd_notify, against real sockets and systemd's own launcher."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from bridge.daemon.systemd import Notifier, inherited_sockets
from tests.conftest import REPO, require_tool

DEADLINE = 10.0

# Runs in a child whose fds 3.. are the passed sockets; reports what it got.
REPORT = r"""
import json, os
from bridge.daemon.systemd import inherited_sockets

groups = inherited_sockets()
print(json.dumps({
    "groups": None if groups is None else {
        name: [
            {"fd": s.fileno(), "family": s.family.name, "type": s.type.name,
             "address": s.getsockname(), "inheritable": s.get_inheritable()}
            for s in sockets
        ]
        for name, sockets in groups.items()
    },
    "environ": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}))
"""

# Moves the fds named in argv to 3, 4, ... and execs REPORT in the same
# process, as systemd does: the pid (and so LISTEN_PID) survives the exec.
LAUNCHER = r"""
import fcntl, os, sys
listen_pid, names, report, *fds = sys.argv[1:]
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(int(fd))
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
env = dict(os.environ, LISTEN_FDS=str(len(high)))
env["LISTEN_PID"] = str(os.getpid()) if listen_pid == "self" else listen_pid
if names != "-":
    env["LISTEN_FDNAMES"] = names
os.execve(sys.executable, [sys.executable, "-c", report], env)
"""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    env["PYTHONPATH"] = str(REPO)
    return env


def launch_with_fds(
    sockets: list[socket.socket], *, names: str | None, listen_pid: str = "self"
) -> dict[str, Any]:
    fds = [s.fileno() for s in sockets]
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, listen_pid, names or "-", REPORT, *map(str, fds)],
        pass_fds=fds,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.fixture
def listeners(tmp_path: Path) -> Iterator[list[socket.socket]]:
    """Bind real listeners: TCP on 127.0.0.1 (and ::1 where available), then Unix."""
    with ExitStack() as stack:
        bound = []
        v4 = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        v4.bind(("127.0.0.1", 0))
        bound.append(v4)
        try:
            v6 = stack.enter_context(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
            v6.bind(("::1", 0))
            bound.append(v6)
        except OSError:
            pass  # no IPv6 loopback here; the IPv4 socket stands for "http"
        unix = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        unix.bind(str(tmp_path / "control.sock"))
        bound.append(unix)
        for sock in bound:
            sock.listen()
        yield bound


def test_named_sockets_are_grouped_by_their_names(listeners: list[socket.socket]) -> None:
    names = ":".join(["http"] * (len(listeners) - 1) + ["control"])

    report = launch_with_fds(listeners, names=names)

    groups = report["groups"]
    assert sorted(groups) == ["control", "http"]
    assert [s["address"][1] for s in groups["http"]] == [s.getsockname()[1] for s in listeners[:-1]]
    assert groups["control"][0]["address"] == listeners[-1].getsockname()
    assert [s["fd"] for s in groups["http"] + groups["control"]] == list(
        range(3, 3 + len(listeners))
    )


def test_unnamed_sockets_are_classified_by_family(listeners: list[socket.socket]) -> None:
    report = launch_with_fds(listeners, names=None)

    groups = report["groups"]
    assert {"AF_UNIX"} == {s["family"] for s in groups["control"]}
    assert {"AF_INET", "AF_INET6"} >= {s["family"] for s in groups["http"]}
    assert len(groups["http"]) == len(listeners) - 1


def test_unknown_names_are_classified_by_family(listeners: list[socket.socket]) -> None:
    report = launch_with_fds(listeners, names="unknown")

    assert sorted(report["groups"]) == ["control", "http"]


def test_inherited_sockets_are_made_non_inheritable(listeners: list[socket.socket]) -> None:
    report = launch_with_fds(listeners, names=None)

    flags = [s["inheritable"] for group in report["groups"].values() for s in group]
    assert [False] * len(listeners) == flags


def test_activation_variables_are_unset_for_children(listeners: list[socket.socket]) -> None:
    report = launch_with_fds(listeners, names="http:control")

    assert report["environ"] == []


def test_sockets_for_another_pid_are_ignored_and_variables_unset(
    listeners: list[socket.socket],
) -> None:
    report = launch_with_fds(listeners, names="http", listen_pid="1")

    assert report == {"groups": None, "environ": []}


def test_no_listen_fds_means_no_activation() -> None:
    environ = {"PATH": "/usr/bin"}

    assert inherited_sockets(environ) is None
    assert environ == {"PATH": "/usr/bin"}


def test_listen_pid_mismatch_unsets_all_variables() -> None:
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}

    assert inherited_sockets(environ) is None
    assert environ == {}


def test_systemd_socket_activate_hands_over_named_sockets(tmp_path: Path) -> None:
    require_tool("systemd-socket-activate", "systemd")
    control, spare = tmp_path / "control.sock", tmp_path / "spare.sock"
    launcher = subprocess.Popen(
        [
            "systemd-socket-activate",
            f"--listen={control}",
            f"--listen={spare}",
            "--fdname=control:unknown",
            f"--setenv=PYTHONPATH={REPO}",
            sys.executable,
            "-c",
            REPORT,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        # It launches the program on the first connection, after saying it
        # listens on each socket: wait for those lines (EOF if it died).
        assert launcher.stderr is not None
        listening = 0
        while listening < 2 and (line := launcher.stderr.readline()):
            listening += line.startswith("Listening on")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(control))
            stdout, stderr = launcher.communicate(timeout=DEADLINE)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()

    assert launcher.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["environ"] == []
    assert list(report["groups"]) == ["control"]
    assert [str(control), str(spare)] == [s["address"] for s in report["groups"]["control"]]
    assert [s["fd"] for s in report["groups"]["control"]] == [3, 4]


# --- sd_notify ---------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        sock.settimeout(DEADLINE)
        yield sock, path


def test_notify_sends_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})

    notifier.notify("READY=1", "STATUS=Listening on 127.0.0.1:8765")

    assert notifier.enabled
    assert sock.recv(4096) == b"READY=1\nSTATUS=Listening on 127.0.0.1:8765"


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"oauth-bridge-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(DEADLINE)

        Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).notify("WATCHDOG=1")

        assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_newline_in_a_value_cannot_start_another_field(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket

    Notifier.from_environ({"NOTIFY_SOCKET": path}).notify("STATUS=a\nREADY=1")

    assert sock.recv(4096) == b"STATUS=a READY=1"


def test_notify_without_a_listener_does_not_raise(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})

    notifier.notify("READY=1")

    assert notifier.enabled


def test_notifier_is_disabled_without_notify_socket() -> None:
    notifier = Notifier.from_environ({})

    notifier.notify("READY=1")

    assert not notifier.enabled
    assert notifier.watchdog_interval is None


def test_from_environ_unsets_the_variables() -> None:
    environ = {
        "NOTIFY_SOCKET": "/run/user/1000/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "HOME": "/home/u",
    }

    Notifier.from_environ(environ)

    assert environ == {"HOME": "/home/u"}


@pytest.mark.parametrize(
    ("watchdog_pid", "expected"),
    [(None, 30.0), ("self", 30.0), ("other", None)],
)
def test_watchdog_interval_is_for_this_process_only(
    watchdog_pid: str | None, expected: float | None
) -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000"}
    if watchdog_pid is not None:
        environ["WATCHDOG_PID"] = str(os.getpid() + (0 if watchdog_pid == "self" else 1))

    assert expected == Notifier.from_environ(environ).watchdog_interval


@pytest.mark.parametrize("usec", ["0", "-5", "soon"])
def test_a_meaningless_watchdog_is_no_watchdog(usec: str) -> None:
    environ = {"WATCHDOG_USEC": usec}

    assert Notifier.from_environ(environ).watchdog_interval is None
