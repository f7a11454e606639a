"""Which local user owns a loopback TCP socket, read from Linux's /proc/net/tcp and tcp6.

Shared by the daemon and a tool's process: standard library only. The kernel prints each
address as hex 32-bit words in host byte order (little-endian on x86 and arm), and the
port as a plain hex number; an IPv4 peer of an IPv6 socket shows in tcp6 as
``::ffff:127.0.0.1`` (``0000000000000000FFFF00000100007F``). Every address is compared
unmapped, so such a peer matches its IPv4 self in tcp.

The uid column is what the kernel maps into the reader's user namespace: under systemd's
PrivateUsers= every user but the daemon's own (root included) reads as the overflow uid,
65534. A socket no process holds any more (a time-wait entry, an orphan) has inode 0, and a
time-wait entry reads as uid 0 whoever opened it: such a socket is reported as ``GONE``,
never as its uid, or a client that hangs up right after its request would pass for root.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[Address, int]
ByteOrder = Literal["little", "big"]

ESTABLISHED: Final = 0x01
LISTEN: Final = 0x0A
# Not a uid: the far end of the connection has hung up or been reset, so the kernel no
# longer says whose it was. A caller that lets in only some uids refuses it unawares.
GONE: Final = -1
TABLES: Final = ("tcp", "tcp6")
PROC: Final = Path("/proc")


@dataclass(frozen=True, slots=True)
class TcpSocket:
    """One line of /proc/net/tcp or tcp6, its addresses as the kernel shows them."""

    local: Endpoint
    remote: Endpoint
    state: int
    uid: int
    inode: int

    @property
    def held(self) -> bool:
        """Say whether a process still holds this socket (time-wait and orphans have inode 0)."""
        return self.inode != 0


def parse_address(text: str, *, byteorder: ByteOrder = sys.byteorder) -> Endpoint:
    """Parse a ``HEXADDR:HEXPORT`` column of /proc/net/tcp or tcp6."""
    host, _, port = text.partition(":")
    if len(host) not in (8, 32) or len(port) != 4:
        raise ValueError(f"not an address column of /proc/net/tcp: {text!r}")
    # Each 32-bit word was printed as a number in host order: turn it back into bytes.
    raw = b"".join(int(host[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, len(host), 8))
    address: Address = ipaddress.IPv4Address(raw) if len(raw) == 4 else ipaddress.IPv6Address(raw)
    return address, int(port, 16)


def parse_line(line: str, *, byteorder: ByteOrder = sys.byteorder) -> TcpSocket | None:
    """Parse one line of /proc/net/tcp or tcp6; None for the header or a blank line."""
    fields = line.split()
    if not fields or fields[0] == "sl":
        return None
    if len(fields) < 10:
        raise ValueError(f"too few columns for a line of /proc/net/tcp: {len(fields)}")
    return TcpSocket(
        local=parse_address(fields[1], byteorder=byteorder),
        remote=parse_address(fields[2], byteorder=byteorder),
        state=int(fields[3], 16),
        uid=int(fields[7]),
        inode=int(fields[9]),
    )


def parse_table(text: str, *, byteorder: ByteOrder = sys.byteorder) -> list[TcpSocket]:
    """Parse the whole text of /proc/net/tcp or tcp6, skipping lines it cannot read."""
    sockets = []
    for line in text.splitlines():
        try:
            parsed = parse_line(line, byteorder=byteorder)
        except ValueError:
            continue  # a line we cannot read tells us nothing; the others still do
        if parsed is not None:
            sockets.append(parsed)
    return sockets


def read_sockets(proc: Path = Path("/proc")) -> list[TcpSocket] | None:
    """Read this network namespace's TCP sockets, or None when neither table is readable."""
    sockets: list[TcpSocket] = []
    readable = False
    for table in TABLES:
        # self/net, not net: systemd's ProcSubset=pid (the sandbox drop-in) hides
        # /proc/net, a symlink to self/net, but not the process's own directory.
        try:
            text = (proc / "self" / "net" / table).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            continue  # no tcp6 without IPv6; neither without /proc
        readable = True
        sockets.extend(parse_table(text))
    return sockets if readable else None


def unmapped(address: Address) -> Address:
    """Return the IPv4 address an IPv4-mapped IPv6 address stands for, any other as is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def endpoint(pair: tuple[str, int]) -> Endpoint:
    """Turn a socket module ``(host, port)`` into an unmapped endpoint."""
    return unmapped(ipaddress.ip_address(pair[0])), pair[1]


def _ends(sock: TcpSocket) -> tuple[Endpoint, Endpoint]:
    return (unmapped(sock.local[0]), sock.local[1]), (unmapped(sock.remote[0]), sock.remote[1])


def best_listener(sockets: Iterable[TcpSocket], target: Endpoint) -> TcpSocket | None:
    """Return the LISTEN socket a connection to ``target`` reaches, as Linux picks it."""
    host, port = target
    ranked: list[tuple[tuple[bool, bool], TcpSocket]] = []
    for sock in sockets:
        if sock.state != LISTEN or sock.local[1] != port:
            continue
        bound = unmapped(sock.local[0])
        exact = bound == host
        # :: takes IPv4 too (unless IPV6_V6ONLY, which /proc does not show); 0.0.0.0
        # takes no IPv6.
        wildcard = bound.is_unspecified and bound.version in (host.version, 6)
        if exact or wildcard:
            # Linux prefers a socket bound to the address over a wildcard, and for an
            # IPv4 address an IPv4 socket over an IPv6 one.
            ranked.append(((not exact, sock.local[0].version == 6), sock))
    return min(ranked, key=lambda entry: entry[0])[1] if ranked else None


def peer_owner(
    sockets: Iterable[TcpSocket], local: tuple[str, int], remote: tuple[str, int]
) -> int | None:
    """Return the uid of the far end of our connection ``local``-``remote``, ``GONE``, or None."""
    try:
        ours = endpoint(local), endpoint(remote)
    except ValueError:
        return None  # not an IP address: not a TCP connection we can look up
    # Every peer is looked up, whatever its address: a local user can connect to
    # 127.0.0.1 from this machine's LAN address as well, and must not pass unasked.
    sockets = list(sockets)
    own: TcpSocket | None = None
    for sock in sockets:
        ends = _ends(sock)
        if ends == (ours[1], ours[0]):
            return sock.uid if sock.held else GONE
        if ends == ours:
            own = sock
    if own is not None:
        # Our end is here but not theirs. Still established: the far end has no socket
        # in this table (WSL's mirrored networking brings Windows' loopback in so), we
        # cannot tell. Past that (CLOSE_WAIT), it hung up and its entry is gone already.
        cannot_tell = own.state == ESTABLISHED and ours[1][0].is_loopback
        return None if cannot_tell else GONE
    # Neither end: either this table does not show this namespace's sockets (WSL 1's is
    # empty), or the connection was reset and both are gone. Our listener tells which.
    return GONE if best_listener(sockets, ours[0]) is not None else None


def connection_owner(
    local: tuple[str, int],
    remote: tuple[str, int],
    *,
    proc: Path = PROC,
    diag: bool | None = None,
) -> int | None:
    """Return the uid owning the far end of our loopback connection, ``GONE``, or None."""
    # ``local`` and ``remote`` are our socket's name and peer name: the far end's socket
    # is the one whose local address is ``remote`` and whose remote address is ``local``.
    # None means it cannot be told (no readable /proc, a peer not on loopback or without
    # a socket in this network namespace): the caller decides what that is worth.
    # sock_diag asks the kernel itself: it is used unless the tables are given (tests).
    if diag if diag is not None else proc == PROC:
        try:
            return diag_owner(local, remote)
        except OSError:
            pass  # no sock_diag here (a seccomp filter, an old kernel): read the tables
    sockets = read_sockets(proc)
    return None if sockets is None else peer_owner(sockets, local, remote)


# sock_diag (netlink), as ss(8) asks: one exact look-up of a socket by its four-tuple,
# some 20 µs, where reading /proc/net/tcp costs milliseconds per thousand sockets (and a
# flood of connections would make every callback pay for it).
NETLINK_SOCK_DIAG: Final = 4
SOCK_DIAG_BY_FAMILY: Final = 20
NLM_F_REQUEST: Final = 1
NLMSG_ERROR: Final = 2
ALL_STATES: Final = 0xFFFFFFFF
NO_COOKIE: Final = 0xFFFFFFFF
ENOENT: Final = 2


def diag_request(local: Endpoint, remote: Endpoint) -> bytes:
    """Build the netlink request for the TCP socket whose own end is ``local``."""
    family = socket.AF_INET if isinstance(local[0], ipaddress.IPv4Address) else socket.AF_INET6

    def padded(address: Address) -> bytes:
        return address.packed + bytes(16 - len(address.packed))

    # struct inet_diag_req_v2, its inet_diag_sockid in network order but for if/cookie.
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, ALL_STATES)
    request += struct.pack("!HH", local[1], remote[1]) + padded(local[0]) + padded(remote[0])
    request += struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    return header + request


def parse_diag_answer(data: bytes) -> tuple[int, int, int] | None:
    """Read (state, uid, inode) from sock_diag's answer; None when there is no such socket."""
    _, kind = struct.unpack_from("=IH", data)
    if kind == NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", data, 16)
        if -error == ENOENT:
            return None
        raise OSError(-error, "sock_diag refused the look-up")
    # struct inet_diag_msg: family, state, timer, retrans, the 48-byte sockid, then
    # expires, rqueue, wqueue, uid, inode.
    state = data[16 + 1]
    uid, inode = struct.unpack_from("=II", data, 16 + 4 + 48 + 12)
    return state, uid, inode


def _diag(local: Endpoint, remote: Endpoint) -> tuple[int, int, int] | None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
        link.settimeout(1.0)
        link.sendto(diag_request(local, remote), (0, 0))
        return parse_diag_answer(link.recv(8192))


def diag_owner(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The far end's uid through sock_diag, with ``peer_owner``'s meaning; OSError if none."""
    try:
        ours = endpoint(local), endpoint(remote)
    except ValueError:
        return None
    # Every peer is looked up, whatever its address (see peer_owner).
    theirs = _diag(ours[1], ours[0])
    if theirs is not None:
        _, uid, inode = theirs
        return uid if inode != 0 else GONE
    own = _diag(ours[0], ours[1])
    if own is not None and own[0] == ESTABLISHED and ours[1][0].is_loopback:
        return None  # our end is here and theirs is not: a relay's far end (WSL): cannot tell
    return GONE  # hung up, reset, or a peer off loopback that no socket here is


def listener_owner(port: int, *, host: str = "127.0.0.1", proc: Path = Path("/proc")) -> int | None:
    """Return the uid of the socket that a connection to ``host`` and ``port`` reaches."""
    # That is the one LISTENing on that address (an IP literal), or else on a wildcard
    # covering it (0.0.0.0, ::); None when nothing listens there or /proc is unreadable.
    target = endpoint((host, port))
    sockets = read_sockets(proc)
    found = None if sockets is None else best_listener(sockets, target)
    return None if found is None else found.uid
