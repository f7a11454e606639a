"""The platform seams: chosen once, Linux's as before, and Windows' pure parts on Linux.

The SID comparison is what keeps a Windows daemon from serving another user and a tool
from handing a login to a squatter on the pipe's name; Wine gives every process the same
SID, so its refusals are shown here, with Wine's recorded SID and well-formed others.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

import bridge.platform as system
from bridge.errors import DaemonUnavailable
from bridge.platform import linux, macos, windows

# Wine 8's one SID for every process (recorded by tests/wine/probe_pipes.py); two users
# of one machine (the domain SID of Microsoft's documentation, RIDs 1013 and 1014); and
# LocalSystem, the well-known SID a service runs as.
WINE = "S-1-5-21-0-0-0-1000"
ALICE = "S-1-5-21-3623811015-3361044348-30300820-1013"
BOB = "S-1-5-21-3623811015-3361044348-30300820-1014"
SYSTEM = "S-1-5-18"


def test_this_systems_module_is_chosen() -> None:
    # .ci/run is Linux; the workflow's macOS runner takes the same test.
    chosen = macos if sys.platform == "darwin" else linux
    assert sys.platform.startswith(("linux", "darwin"))
    assert system.NAME == chosen.NAME
    assert system.connect is chosen.connect
    assert system.sync_file is chosen.sync_file
    assert system.service_sockets is chosen.service_sockets


@pytest.mark.parametrize(
    ("peer", "own", "same"),
    [
        (ALICE, ALICE, True),
        (WINE, WINE, True),
        (ALICE.lower(), ALICE, True),  # the one SID, however it is spelled
        (f" {ALICE} ", ALICE, True),
        (BOB, ALICE, False),  # another user of the machine
        (SYSTEM, ALICE, False),  # a service squatting the pipe's name
        (ALICE + "0", ALICE, False),
        (None, ALICE, False),  # a peer whose token could not be read
        ("", ALICE, False),
        ("not a sid", "not a sid", False),
        (1000, 1000, False),  # a uid is no SID
        (ALICE, "garbage", False),
    ],
)
def test_a_pipe_peer_is_this_user_only_when_its_sid_is_ours(
    peer: int | str | None, own: str, same: bool
) -> None:
    assert windows.same_user(peer, own) is same


def test_the_pipe_is_named_after_the_users_sid_and_grants_only_them() -> None:
    assert windows.pipe_name(ALICE) == "\\\\.\\pipe\\oauth-bridge-" + ALICE
    assert windows.pipe_name(ALICE.lower()) == windows.pipe_name(ALICE)
    assert windows.owner_only_sddl(ALICE) == f"D:P(A;;GA;;;{ALICE})"
    with pytest.raises(ValueError, match="not a SID"):
        windows.pipe_name("S-1-5-21-x;;;WD")  # nothing that could widen the DACL


@pytest.mark.parametrize(("peer", "same"), [(os.getuid(), True), (65534, False), (None, False)])
def test_a_control_peer_on_linux_is_this_user_by_uid(peer: int | None, same: bool) -> None:
    assert linux.same_user(peer, linux.own_identity()) is same


def test_a_file_lock_is_held_once(tmp_path: Path) -> None:
    path = tmp_path / "daemon.lock"
    with path.open("a+") as first, path.open("a+") as second:
        assert system.try_lock(first)
        assert not system.try_lock(second)
    with path.open("a+") as third:
        system.lock(third)  # the first went with its file


def test_a_synced_file_keeps_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "store-wal"
    path.write_bytes(b"commit")
    fd = system.open_for_sync(path)
    try:
        system.sync_file(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"commit"


async def test_the_control_channel_speaks_both_ways_and_names_its_peer(tmp_path: Path) -> None:
    address = system.control_address(tmp_path)
    assert address == tmp_path / "control.sock"
    assert not system.control_exists(address)
    listener = system.listen_control(address)
    assert isinstance(listener, socket.socket)
    peers: list[int | str | None] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(system.peer_identity(writer.transport))
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, sock=listener)
    try:
        assert system.control_exists(address)
        reader, writer = await system.open_connection(address)
        writer.write(b"async\n")
        assert await reader.readline() == b"ASYNC\n"
        writer.close()

        def blocking() -> bytes:
            channel = system.connect(address, 5.0)
            try:
                channel.sendall(b"blocking\n")
                return channel.recv(100)
            finally:
                channel.close()

        assert await asyncio.to_thread(blocking) == b"BLOCKING\n"
    finally:
        server.close()
        await server.wait_closed()
    assert peers == [os.getuid(), os.getuid()]


def test_a_control_socket_that_cannot_be_made_says_where(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="cannot create the control socket"):
        system.listen_control(tmp_path / "missing" / "control.sock")
