"""The daemon's listeners: TCP bound here on loopback (or adopted from systemd), and the
control channel the system gives (``bridge.platform``)."""

from __future__ import annotations

import errno
import re
import socket
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.errors import DaemonUnavailable
from bridge.platform import listen_control

if TYPE_CHECKING:
    from bridge.daemon.control_site import ControlListener

# Errors that mean "this host has no IPv6 loopback", not "something is wrong".
NO_IPV6 = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT}


@dataclass
class Listeners:
    """TCP sockets for browsers and the Unix socket for tools, ready to accept."""

    http: list[socket.socket]
    control: socket.socket | ControlListener  # the Unix socket, or Windows' control pipe
    adopted: bool = False  # passed by systemd, which owns (and keeps) them
    owns_control_path: bool = True
    hosts: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.http[0].getsockname()[1])

    def close(self) -> None:
        for sock in [*self.http, self.control]:
            sock.close()


def loopback_hosts(host: str) -> list[str]:
    return ["127.0.0.1", "::1"] if host == "localhost" else [host]


def bind_http(host: str, port: int) -> tuple[list[socket.socket], list[str]]:
    """Bind every loopback address of ``host`` on one port (a free one for port 0)."""
    for _ in range(20):
        try:
            return _bind_all(loopback_hosts(host), port)
        except _PortRace:
            continue  # the free port we got on 127.0.0.1 was taken on ::1: pick again
    raise DaemonUnavailable("could not find a port free on both 127.0.0.1 and ::1")


class _PortRace(Exception):
    pass


def _bind_all(hosts: list[str], port: int) -> tuple[list[socket.socket], list[str]]:
    sockets: list[socket.socket] = []
    bound: list[str] = []
    try:
        for host in hosts:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                if exc.errno in NO_IPV6 and family == socket.AF_INET6 and bound:
                    continue
                raise
            # SO_REUSEADDR lets a restart bind over TIME_WAIT connections; it does not let
            # two listeners share the port (that would be SO_REUSEPORT, which we never set).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                sock.close()
                if exc.errno in NO_IPV6 and family == socket.AF_INET6 and bound:
                    continue  # no IPv6 loopback on this host: IPv4 alone will do
                if exc.errno == errno.EADDRINUSE:
                    if sockets and port == 0:
                        raise _PortRace from None
                    raise DaemonUnavailable(
                        port_taken_message(host, port or sockets_port(sockets))
                    ) from None
                raise DaemonUnavailable(
                    f"cannot listen on {host} port {port}: {exc.strerror}"
                ) from None
            sock.listen(128)
            sock.setblocking(False)
            sockets.append(sock)
            bound.append(host)
            if port == 0:
                port = sock.getsockname()[1]
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets, bound


def sockets_port(sockets: list[socket.socket]) -> int:
    return int(sockets[0].getsockname()[1]) if sockets else 0


def port_taken_message(host: str, port: int) -> str:
    """Say who holds the port: another oauth-bridge names itself in its Server header."""
    authority = f"[{host}]" if ":" in host else host
    owner = _probe_oauth_bridge(f"http://{authority}:{port}/healthz", port)
    if owner:
        return (
            f"port {port} is taken by another oauth-bridge ({owner}) that uses another runtime "
            "dir; stop it, or give this one another port with --port or OAUTH_BRIDGE_PORT"
        )
    return (
        f"port {port} on {host} is in use by another program; free it, or choose another "
        "port with --port or OAUTH_BRIDGE_PORT"
    )


def _probe_oauth_bridge(url: str, port: int) -> str | None:
    request = urllib.request.Request(url, headers={"Host": f"127.0.0.1:{port}"})  # noqa: S310  # loopback http by construction
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:  # noqa: S310  # same
            server = str(response.headers.get("Server", ""))
    except Exception:  # any failure means "not an oauth-bridge we can name"
        return None
    # A squatter chooses its Server header: only our own shape is named, and nothing
    # of it reaches the terminal unescaped.
    if not re.fullmatch(r"oauth-bridge/[0-9A-Za-z.+-]{1,40}", server):
        return None
    return server


def bind_control(path: Path) -> socket.socket | ControlListener:
    """The control channel's listener: the system's (``bridge.platform.listen_control``)."""
    return listen_control(path)
