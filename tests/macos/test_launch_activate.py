"""launchd's sockets through ctypes, against a stub of launch_activate_socket built with gcc."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.platform import macos
from tests.macos.conftest import build_launch_stub


@pytest.fixture
def stub(tmp_path: Path) -> ctypes.CDLL:
    """Build the stub into the test's dir (its counters are per library) and load it."""
    return ctypes.CDLL(str(build_launch_stub(tmp_path)))


@pytest.fixture
def closing() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_activate_returns_every_fd_of_the_name(
    stub: ctypes.CDLL, closing: list[socket.socket]
) -> None:
    fds = macos.launch_activate_socket("http", library=stub)
    closing.extend(socket.socket(fileno=fd) for fd in fds)

    assert [(sock.getsockname()[0], sock.family) for sock in closing] == [
        ("127.0.0.1", socket.AF_INET)
    ] * 2


def test_activate_frees_the_array_it_was_given(
    stub: ctypes.CDLL, closing: list[socket.socket]
) -> None:
    fds = macos.launch_activate_socket("control", library=stub)
    closing.extend(socket.socket(fileno=fd) for fd in fds)
    assert stub.launch_stub_released() == 1


def test_activate_raises_enoent_for_a_name_the_plist_lacks(stub: ctypes.CDLL) -> None:
    with pytest.raises(OSError, match="'nonesuch'") as raised:
        macos.launch_activate_socket("nonesuch", library=stub)
    assert (raised.value.errno, stub.launch_stub_released()) == (errno.ENOENT, 0)


def test_activate_says_when_launchd_did_not_start_the_process(
    stub: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCH_STUB_NOT_MANAGED", "1")
    with pytest.raises(macos.NotLaunchedByLaunchd) as raised:
        macos.launch_activate_socket("http", library=stub)
    assert raised.value.errno == errno.ESRCH


def test_launchd_sockets_groups_the_sockets_by_name(
    stub: ctypes.CDLL, closing: list[socket.socket]
) -> None:
    groups = macos.launchd_sockets(["http", "control", "nonesuch"], library=stub)
    assert groups is not None
    closing.extend(sock for group in groups.values() for sock in group)

    assert {name: [sock.family for sock in group] for name, group in groups.items()} == {
        "http": [socket.AF_INET] * 2,
        "control": [socket.AF_UNIX],
    }


def test_launchd_sockets_are_not_inherited_by_children(
    stub: ctypes.CDLL, closing: list[socket.socket]
) -> None:
    groups = macos.launchd_sockets(["http"], library=stub)
    assert groups is not None
    closing.extend(groups["http"])
    assert [sock.get_inheritable() for sock in closing] == [False, False]


def test_launchd_sockets_is_none_outside_launchd(
    stub: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAUNCH_STUB_NOT_MANAGED", "1")
    assert macos.launchd_sockets(["http", "control"], library=stub) is None


def test_without_the_plists_word_launchd_is_not_asked() -> None:
    # No library at all: were it called, loading libSystem on Linux would fail.
    assert macos.service_sockets({}) is None
    assert macos.service_sockets({"OAUTH_BRIDGE_LAUNCHD_SOCKETS": "0"}) is None


def test_the_plists_word_is_not_handed_to_the_daemons_children() -> None:
    environ = {"OAUTH_BRIDGE_LAUNCHD_SOCKETS": "0", "HOME": "/Users/alice"}
    macos.service_sockets(environ)
    assert environ == {"HOME": "/Users/alice"}


def test_a_name_that_fails_closes_the_sockets_already_taken(
    stub: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A control path the stub cannot bind (longer than sun_path): "control" fails after
    # "http" handed over two listeners, which must not stay open in a failed daemon.
    monkeypatch.setenv("LAUNCH_STUB_CONTROL_PATH", str(tmp_path / ("x" * 120)))
    before = set(os.listdir("/proc/self/fd"))

    with pytest.raises(OSError, match="launch_activate_socket"):
        macos.launchd_sockets(["http", "control"], library=stub)

    assert set(os.listdir("/proc/self/fd")) == before
