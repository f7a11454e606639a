"""Linux: SO_PEERCRED, fdatasync, /proc and sock_diag; the rest is POSIX (``posix``)."""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from bridge.platform.posix import (
    CANCEL_SIGNALS,
    NOFOLLOW,
    check_parents,
    check_private_dir,
    connect,
    control_address,
    control_exists,
    detached,
    effective_uid,
    harden_process,
    listen_control,
    lock,
    open_connection,
    open_for_sync,
    own_identity,
    same_user,
    stop_signals,
    try_lock,
)

__all__ = [
    "CANCEL_SIGNALS",
    "NAME",
    "NOFOLLOW",
    "SERVICE_MANAGER",
    "SERVICE_MODULE",
    "check_parents",
    "check_private_dir",
    "connect",
    "control_address",
    "control_exists",
    "detached",
    "effective_uid",
    "harden_process",
    "listen_control",
    "lock",
    "open_connection",
    "open_for_sync",
    "own_identity",
    "peer_identity",
    "process_exited",
    "same_user",
    "service_sockets",
    "stop_signals",
    "sync_file",
    "tcp_listener_owner",
    "tcp_peer_owner",
    "try_lock",
]

NAME = "linux"
# What install-service runs: the systemd user units.
SERVICE_MODULE = "bridge.service.install"
# Who may hand the daemon its listening sockets, and where they are configured.
SERVICE_MANAGER = "systemd"


def peer_identity(transport: Any) -> int | None:
    """The uid of the process at the other end of a control connection (SO_PEERCRED)."""
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def tcp_peer_owner(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid that opened the far end of a loopback TCP connection (sock_diag, /proc)."""
    from bridge.netowner import connection_owner  # here: only the daemon asks

    return connection_owner(local, remote)


def tcp_listener_owner(port: int) -> int | None:
    """The uid of the socket that listens on 127.0.0.1:``port`` (/proc), or None."""
    from bridge.netowner import listener_owner  # here: only a wait asks

    return listener_owner(port)


def sync_file(fd: int) -> None:
    """Put the file's data on disk (its metadata only as far as reading it back needs)."""
    os.fdatasync(fd)


def process_exited(pid: int) -> bool:
    """Say whether the process is gone (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def service_sockets() -> dict[str, list[socket.socket]] | None:
    """The listening sockets systemd passed (socket activation) by name, or None."""
    from bridge.platform.systemd_activation import inherited_sockets  # only the daemon asks

    return inherited_sockets()
