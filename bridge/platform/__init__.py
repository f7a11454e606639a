"""What differs between systems, chosen once by ``sys.platform`` (as platformdirs does).

Each module holds only its system: ``linux`` (AF_UNIX control socket, SO_PEERCRED, flock,
fdatasync, systemd's sockets), ``macos`` (the same socket with LOCAL_PEERCRED, F_FULLFSYNC,
launchd's sockets) and ``windows`` (a per-user named pipe, its client's and server's
SIDs, msvcrt.locking, fsync); ``posix`` is what the first two share. Call sites import from here and never test
``sys.platform`` themselves. Standard library only: a tool's process imports this.

    from bridge import platform as system
    system.control_address(runtime_dir)   # where the control channel listens
    system.connect(address, timeout)      # a tool's blocking channel (sendall/recv/close)
    await system.open_connection(address) # asyncio streams to it
    system.listen_control(address)        # the daemon's listener (a socket or a pipe)
    system.peer_identity(transport)       # uid (Linux) or SID (Windows) of a control peer
    system.own_identity()                 # this process's uid or SID
    system.try_lock(handle) / system.lock(handle)   # exclusive, whole-file, advisory
    system.sync_file(fd)                  # the file's data on disk
    system.service_sockets()              # listeners systemd or launchd holds for us, or None
"""

from __future__ import annotations

import sys

from bridge.errors import UsageError


class UnsupportedPlatform(UsageError):
    """oauth-bridge has no implementation for this system (yet)."""


if sys.platform == "win32":
    from bridge.platform.windows import (
        CANCEL_SIGNALS,
        NAME,
        NOFOLLOW,
        SERVICE_MANAGER,
        SERVICE_MODULE,
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
        peer_identity,
        process_exited,
        same_user,
        service_sockets,
        stop_signals,
        sync_file,
        tcp_listener_owner,
        tcp_peer_owner,
        try_lock,
    )
elif sys.platform.startswith("linux"):
    from bridge.platform.linux import (
        CANCEL_SIGNALS,
        NAME,
        NOFOLLOW,
        SERVICE_MANAGER,
        SERVICE_MODULE,
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
        peer_identity,
        process_exited,
        same_user,
        service_sockets,
        stop_signals,
        sync_file,
        tcp_listener_owner,
        tcp_peer_owner,
        try_lock,
    )
elif sys.platform == "darwin":
    from bridge.platform.macos import (
        CANCEL_SIGNALS,
        NAME,
        NOFOLLOW,
        SERVICE_MANAGER,
        SERVICE_MODULE,
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
        peer_identity,
        process_exited,
        same_user,
        service_sockets,
        stop_signals,
        sync_file,
        tcp_listener_owner,
        tcp_peer_owner,
        try_lock,
    )
else:
    raise UnsupportedPlatform(
        f"oauth-bridge runs on Linux, macOS and Windows, not on {sys.platform}"
    )

__all__ = [
    "CANCEL_SIGNALS",
    "NAME",
    "NOFOLLOW",
    "SERVICE_MANAGER",
    "SERVICE_MODULE",
    "UnsupportedPlatform",
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
