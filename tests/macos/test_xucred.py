"""The peer check of macOS: struct xucred, read from bytes laid out as the C compiler lays them."""

from __future__ import annotations

import socket
import struct
import subprocess
from pathlib import Path

import pytest

from bridge.platform import macos
from tests.conftest import require_tool

STUB = Path(__file__).parent / "stub"

# A struct xucred for uid 501 with groups staff, everyone, localaccounts, as
# stub/xucred_layout.c prints it on a little-endian machine: version 0, uid 501,
# ngroups 3, two pad bytes (0xAA: never read), then 16 gids.
RECORDED = bytes.fromhex("00000000f50100000300aaaa140000000c0000003d000000" + "00000000" * 13)


def test_recorded_bytes_are_one_struct_xucred() -> None:
    assert len(RECORDED) == macos.XUCRED_SIZE


def test_parse_xucred_returns_the_effective_uid() -> None:
    assert macos.parse_xucred(RECORDED) == 501


def test_parse_xucred_skips_the_padding_after_cr_ngroups() -> None:
    zeroed = RECORDED[:10] + b"\0\0" + RECORDED[12:]
    assert macos.parse_xucred(zeroed) == macos.parse_xucred(RECORDED)


def test_parse_xucred_refuses_another_version() -> None:
    other = struct.pack("=I", 1) + RECORDED[4:]
    with pytest.raises(macos.PeerCredentialsError, match="version 1"):
        macos.parse_xucred(other)


@pytest.mark.parametrize("length", [0, 8, 75])
def test_parse_xucred_refuses_a_short_buffer(length: int) -> None:
    with pytest.raises(macos.PeerCredentialsError, match=f"{length} bytes"):
        macos.parse_xucred(RECORDED[:length])


def test_parse_xucred_refuses_a_group_count_no_kernel_writes() -> None:
    garbled = RECORDED[:8] + struct.pack("=h", 17) + RECORDED[10:]
    with pytest.raises(macos.PeerCredentialsError, match="cr_ngroups 17"):
        macos.parse_xucred(garbled)


def test_peer_uid_asks_local_peercred_for_a_whole_struct() -> None:
    asked: list[tuple[int, int, int]] = []

    class Peer:
        def getsockopt(self, level: int, option: int, size: int) -> bytes:
            asked.append((level, option, size))
            return RECORDED

    assert macos.peer_uid(Peer()) == 501  # type: ignore[arg-type]  # a socket's one method
    assert asked == [(0, 0x001, 76)]


def test_struct_format_matches_the_c_layout(tmp_path: Path) -> None:
    gcc = require_tool("gcc", "gcc")
    program = tmp_path / "xucred_layout"
    subprocess.run(
        [gcc, "-Wall", "-Werror", "-o", str(program), str(STUB / "xucred_layout.c")], check=True
    )
    output = subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout
    layout = dict(line.split(" ", 1) for line in output.splitlines())

    assert {key: value for key, value in layout.items() if key != "bytes"} == {
        "sizeof": "76",
        "cr_version": "0",
        "cr_uid": "4",
        "cr_ngroups": "8",
        "cr_groups": "12",
    }
    assert int(layout["sizeof"]) == macos.XUCRED_SIZE
    assert bytes.fromhex(layout["bytes"]) == RECORDED


def test_peer_identity_reads_the_unix_socket_of_a_transport() -> None:
    class Peer:
        family = socket.AF_UNIX

        def getsockopt(self, level: int, option: int, size: int) -> bytes:
            return RECORDED

    class Transport:
        def get_extra_info(self, name: str) -> object:
            return Peer() if name == "socket" else None

    assert macos.peer_identity(Transport()) == 501


def test_peer_identity_is_none_without_a_unix_socket() -> None:
    class Transport:
        def get_extra_info(self, name: str) -> object:
            return None

    assert (macos.peer_identity(Transport()), macos.peer_identity(None)) == (None, None)
