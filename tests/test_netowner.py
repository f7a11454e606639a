"""Who owns a loopback socket: /proc/net/tcp's lines as recorded, then real sockets."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from bridge.netowner import (
    ESTABLISHED,
    GONE,
    LISTEN,
    TcpSocket,
    best_listener,
    connection_owner,
    endpoint,
    listener_owner,
    parse_address,
    parse_line,
    parse_table,
    peer_owner,
    read_sockets,
)
from tests.conftest import REPO

# Recorded on x86-64 (Linux 6.18), uids then set to a daemon's (1000) and another
# user's (1001). A daemon on 127.0.0.1:37747 (0x9373) with one client of uid 1001 on
# port 50000 and one that hung up (port 45592: its time-wait entry reads uid 0, inode 0,
# and the daemon's end is in CLOSE_WAIT, 08); a dual-stack daemon on [::]:42373 (0xA585)
# whose end of an IPv4 client's connection shows IPv4-mapped in tcp6.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   2: 0100007F:9373 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 39708 1 00000000644f39a7 100 0 0 10 0
 329: 0100007F:B218 0100007F:9373 05 00000000:00000000 03:0000176A 00000000     0        0 0 3 0000000072162ae4
 352: 0100007F:9373 0100007F:B218 08 00000000:00000002 00:00000000 00000000  1000        0 39710 1 000000001413e4f9 20 4 28 10 -1
 410: 0100007F:C350 0100007F:9373 01 00000000:00000000 00:00000000 00000000  1001        0 39720 2 00000000329eecc7 20 0 0 10 -1
 411: 0100007F:9373 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 39721 1 00000000329eecc8 20 0 0 10 -1
 592: 0100007F:8BB4 0100007F:A585 01 00000000:00000000 00:00000000 00000000  1001        0 39713 2 00000000329eecc6 20 0 0 10 -1
"""
# ::1:41815 (0xA357) with a client of uid 1000 on port 58984, and the dual-stack one.
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A357 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 39715 1 00000000a324109e 100 0 0 10 0
   1: 00000000000000000000000000000000:A585 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 39712 1 0000000083acb9eb 100 0 0 10 0
   3: 00000000000000000000000001000000:E668 00000000000000000000000001000000:A357 01 00000000:00000000 00:00000000 00000000  1000        0 39716 2 000000002c12a98f 20 0 0 10 -1
   4: 00000000000000000000000001000000:A357 00000000000000000000000001000000:E668 01 00000000:00000000 00:00000000 00000000  1000        0 39717 1 00000000568c8b31 20 0 0 10 -1
   5: 0000000000000000FFFF00000100007F:A585 0000000000000000FFFF00000100007F:8BB4 01 00000000:00000000 00:00000000 00000000  1000        0 39714 1 000000004be60050 20 0 0 10 -1
"""
LOCALHOST = IPv4Address("127.0.0.1")


def recorded() -> list[TcpSocket]:
    return parse_table(TCP, byteorder="little") + parse_table(TCP6, byteorder="little")


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("0100007F:9373", (LOCALHOST, 37747)),
        ("00000000:0000", (IPv4Address("0.0.0.0"), 0)),
        ("00000000000000000000000001000000:A357", (IPv6Address("::1"), 41815)),
        ("0000000000000000FFFF00000100007F:A585", (IPv6Address("::ffff:127.0.0.1"), 42373)),
        ("B80D0120000000000000000001000000:0050", (IPv6Address("2001:db8::1"), 80)),
    ],
)
def test_an_address_column_reads_as_the_kernel_meant_it(
    column: str, expected: tuple[IPv4Address | IPv6Address, int]
) -> None:
    assert parse_address(column, byteorder="little") == expected


def test_a_big_endian_kernel_prints_the_words_unswapped() -> None:
    assert parse_address("7F000001:9373", byteorder="big") == (LOCALHOST, 37747)
    assert parse_address("00000000000000000000FFFF7F000001:0050", byteorder="big") == (
        IPv6Address("::ffff:127.0.0.1"),
        80,
    )


@pytest.mark.parametrize("column", ["0100007F", "0100007F:93", "01007F:9373", "ZZ00007F:9373", ""])
def test_a_column_that_is_no_address_is_refused(column: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_address(column)


def test_a_line_gives_state_uid_and_inode() -> None:
    established = parse_line(TCP.splitlines()[4], byteorder="little")
    time_wait = parse_line(TCP.splitlines()[2], byteorder="little")

    assert established == TcpSocket(
        local=(LOCALHOST, 50000),
        remote=(LOCALHOST, 37747),
        state=ESTABLISHED,
        uid=1001,
        inode=39720,
    )
    assert established.held
    assert time_wait is not None
    assert (time_wait.state, time_wait.uid, time_wait.held) == (0x05, 0, False)


def test_the_header_and_blank_lines_are_no_socket_and_a_short_line_is_refused() -> None:
    assert parse_line(TCP.splitlines()[0]) is None
    assert parse_line("   ") is None
    with pytest.raises(ValueError, match="too few columns"):
        parse_line("   2: 0100007F:9373 00000000:0000 0A")


def test_a_table_skips_the_lines_it_cannot_read() -> None:
    garbled = TCP.replace("410: 0100007F:C350", "410: 0100007G:C350")

    sockets = parse_table(garbled, byteorder="little")

    assert len(parse_table(TCP, byteorder="little")) == 6
    assert len(sockets) == 5
    assert (LOCALHOST, 50000) not in [sock.local for sock in sockets]


def test_the_far_end_of_an_ipv4_connection_is_found() -> None:
    # The daemon's end: its name is 127.0.0.1:37747, its peer 127.0.0.1:50000.
    assert peer_owner(recorded(), ("127.0.0.1", 37747), ("127.0.0.1", 50000)) == 1001


def test_the_far_end_of_an_ipv6_connection_is_found() -> None:
    assert peer_owner(recorded(), ("::1", 41815), ("::1", 58984)) == 1000


def test_an_ipv4_mapped_end_finds_its_ipv4_far_end() -> None:
    # As a dual-stack socket names both ends: ::ffff:127.0.0.1; the client is in tcp.
    owner = peer_owner(recorded(), ("::ffff:127.0.0.1", 42373), ("::ffff:127.0.0.1", 35764))

    assert owner == 1001


def test_a_far_end_that_hung_up_is_gone_not_root() -> None:
    assert peer_owner(recorded(), ("127.0.0.1", 37747), ("127.0.0.1", 45592)) == GONE


def test_our_end_past_established_without_a_far_end_is_gone() -> None:
    # The time-wait entry already expired (or never was: too many of them).
    without_time_wait = [s for s in recorded() if s.held]

    assert peer_owner(without_time_wait, ("127.0.0.1", 37747), ("127.0.0.1", 45592)) == GONE


def test_our_end_established_without_a_far_end_cannot_be_told() -> None:
    # WSL's mirrored networking: Windows' side of the connection has no socket here.
    without_client = [s for s in recorded() if s.local != (LOCALHOST, 50000)]

    assert peer_owner(without_client, ("127.0.0.1", 37747), ("127.0.0.1", 50000)) is None


def test_neither_end_with_our_listener_there_was_reset() -> None:
    assert peer_owner(recorded(), ("127.0.0.1", 37747), ("127.0.0.1", 50001)) == GONE


def test_neither_end_nor_a_listener_cannot_be_told() -> None:
    # WSL 1's /proc/net/tcp is there but empty.
    assert peer_owner([], ("127.0.0.1", 37747), ("127.0.0.1", 50000)) is None


@pytest.mark.parametrize("remote", [("192.0.2.7", 50000), ("2001:db8::7", 50000)])
def test_a_peer_off_loopback_is_looked_up_too_and_gone_when_not_found(
    remote: tuple[str, int],
) -> None:
    # A local user may connect to 127.0.0.1 from this machine's LAN address: it is
    # asked about like any peer, and one that no socket here is must not pass.
    assert peer_owner(recorded(), ("127.0.0.1", 37747), remote) == GONE


def test_a_peer_that_is_not_an_address_cannot_be_told() -> None:
    assert peer_owner(recorded(), ("127.0.0.1", 37747), ("not-an-address", 1)) is None


@pytest.mark.parametrize(
    ("host", "port", "uid"),
    [
        ("127.0.0.1", 37747, 1000),
        ("::1", 41815, 1000),
        ("127.0.0.1", 42373, 1000),  # :: is dual-stack unless told otherwise
        ("::ffff:127.0.0.1", 42373, 1000),
        ("::1", 42373, 1000),
        ("::1", 37747, None),  # 127.0.0.1 takes no IPv6
        ("127.0.0.2", 37747, None),
        ("127.0.0.1", 41815, None),
        ("127.0.0.1", 50000, None),  # a client's port: no listener
    ],
)
def test_the_listener_a_connection_would_reach(host: str, port: int, uid: int | None) -> None:
    found = best_listener(recorded(), endpoint((host, port)))

    assert (None if found is None else found.uid) == uid


def listening(local: tuple[str, int], uid: int) -> TcpSocket:
    # As the kernel shows it: a mapped address stays mapped.
    return TcpSocket(
        local=(ip_address(local[0]), local[1]),
        remote=(IPv4Address(0), 0),
        state=LISTEN,
        uid=uid,
        inode=1,
    )


@pytest.mark.parametrize(
    ("sockets", "uid"),
    [
        ([("0.0.0.0", 80, 1), ("127.0.0.1", 80, 2)], 2),
        ([("::", 80, 1), ("0.0.0.0", 80, 2)], 2),
        ([("::", 80, 1), ("::ffff:127.0.0.1", 80, 3), ("0.0.0.0", 80, 2)], 3),
        ([("::ffff:127.0.0.1", 80, 3), ("127.0.0.1", 80, 4)], 4),
    ],
)
def test_linux_prefers_the_bound_address_then_ipv4(
    sockets: list[tuple[str, int, int]], uid: int
) -> None:
    table = [listening((host, port), owner) for host, port, owner in sockets]

    for order in (table, table[::-1]):
        found = best_listener(order, endpoint(("127.0.0.1", 80)))
        assert found is not None
        assert found.uid == uid


def write_proc(root: Path, tables: dict[str, str]) -> Path:
    net = root / "self" / "net"
    net.mkdir(parents=True)
    for name, text in tables.items():
        (net / name).write_text(text, encoding="ascii")
    return root


def test_both_tables_are_read_through_self(tmp_path: Path) -> None:
    proc = write_proc(tmp_path, {"tcp": TCP, "tcp6": TCP6})

    assert sorted(map(str, read_sockets(proc) or [])) == sorted(map(str, recorded()))
    assert connection_owner(("127.0.0.1", 37747), ("127.0.0.1", 50000), proc=proc) == 1001
    assert connection_owner(("::1", 41815), ("::1", 58984), proc=proc) == 1000
    assert listener_owner(42373, proc=proc) == 1000
    assert listener_owner(41815, host="::1", proc=proc) == 1000


def test_ipv4_alone_is_enough(tmp_path: Path) -> None:
    # Without IPv6 there is no tcp6.
    proc = write_proc(tmp_path, {"tcp": TCP})

    assert connection_owner(("127.0.0.1", 37747), ("127.0.0.1", 50000), proc=proc) == 1001


def test_no_table_cannot_be_told(tmp_path: Path) -> None:
    # /proc/net alone is not read: under ProcSubset=pid only /proc/self/net is there.
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP, encoding="ascii")

    assert read_sockets(tmp_path) is None
    assert connection_owner(("127.0.0.1", 37747), ("127.0.0.1", 50000), proc=tmp_path) is None
    assert listener_owner(37747, proc=tmp_path) is None


def test_a_listener_host_must_be_an_address() -> None:
    with pytest.raises(ValueError, match="localhost"):
        listener_owner(80, host="localhost")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# IPv6 where the host has it (a container may not): the IPv4 case runs everywhere.
LISTENERS = ["127.0.0.1", *(["dual-stack", "::1"] if has_ipv6_loopback() else [])]


@pytest.fixture(params=LISTENERS)
def connection(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A listener of ours and the accepted end of a connection to it, its client still open."""
    family = socket.AF_INET if request.param == "127.0.0.1" else socket.AF_INET6
    bind = {"127.0.0.1": "127.0.0.1", "dual-stack": "::", "::1": "::1"}[request.param]
    with socket.create_server(
        (bind, 0), family=family, dualstack_ipv6=request.param == "dual-stack"
    ) as server:
        target = "::1" if request.param == "::1" else "127.0.0.1"
        with socket.create_connection((target, server.getsockname()[1])) as client:
            accepted, _ = server.accept()
            with accepted:
                yield server, accepted
                client.close()


def test_a_real_connection_and_listener_are_ours(
    connection: tuple[socket.socket, socket.socket],
) -> None:
    server, accepted = connection
    local, remote = accepted.getsockname()[:2], accepted.getpeername()[:2]
    host = "::1" if local[0] == "::1" else "127.0.0.1"

    assert connection_owner(local, remote) == os.geteuid()
    assert listener_owner(server.getsockname()[1], host=host) == os.geteuid()


def test_a_real_client_that_hung_up_is_gone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with accepted:
            local, remote = accepted.getsockname(), accepted.getpeername()
            assert connection_owner(local, remote) == os.geteuid()
            client.close()

            assert connection_owner(local, remote) == GONE


def test_a_real_client_that_reset_is_gone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with accepted:
            local, remote = accepted.getsockname(), accepted.getpeername()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()

            assert connection_owner(local, remote) == GONE


def test_nothing_listens_on_a_closed_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    assert listener_owner(port) is None


def test_the_tables_are_found_where_proc_shows_processes_only(tmp_path: Path) -> None:
    """ProcSubset=pid (the sandbox drop-in) hides /proc/net; /proc/self/net stays."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root to mount a proc of its own (CI runs as root)")
    mountpoint = tmp_path / "proc"
    mountpoint.mkdir()
    with socket.create_server(("127.0.0.1", 0)) as server:
        script = (
            "import sys; from pathlib import Path; from bridge.netowner import listener_owner\n"
            "proc = Path(sys.argv[1])\n"
            "print((proc / 'net').exists(), listener_owner(int(sys.argv[2]), proc=proc))\n"
        )
        # A mount namespace of its own, so the mount goes with it; a pid one, which a
        # proc of its own needs.
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "sh",
                "-c",
                'mount -t proc -o subset=pid proc "$1" && exec "$2" -c "$3" "$1" "$4"',
                "sh",
                str(mountpoint),
                sys.executable,
                script,
                str(server.getsockname()[1]),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", str(os.geteuid())]


def test_sock_diag_and_the_tables_agree_on_a_real_connection() -> None:
    import os
    import socket as sockets

    from bridge.netowner import diag_owner

    with sockets.create_server(("127.0.0.1", 0)) as server:
        client = sockets.create_connection(server.getsockname())
        accepted, _ = server.accept()
        ours = accepted.getsockname(), accepted.getpeername()
        by_diag = diag_owner(*ours)
        by_table = connection_owner(*ours, diag=False)
        client.close()
        accepted.close()
        after = diag_owner(*ours)

    assert by_diag == by_table == os.geteuid()
    assert after == GONE
    assert diag_owner(("127.0.0.1", 1), ("127.0.0.1", 2)) == GONE  # no such connection
