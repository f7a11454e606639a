"""What differs between systems, chosen once by ``sys.platform`` (as platformdirs does).

Each module holds only its system: ``linux`` (AF_UNIX control socket, SO_PEERCRED, flock,
fdatasync), ``windows`` (a per-user named pipe, its client's and server's SIDs,
msvcrt.locking, fsync) and ``macos``. Call sites import from here and never test
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
        stop_signals,
        sync_file,
        tcp_listener_owner,
        tcp_peer_owner,
        try_lock,
    )
elif sys.platform == "darwin":
    # bridge/platform/macos.py (control socket, LOCAL_PEERCRED, F_FULLFSYNC) is being
    # written; until it provides the whole seam, say so in one sentence.
    raise UnsupportedPlatform(
        "oauth-bridge does not run on macOS yet (bridge.platform.macos is not complete)"
    )
elif sys.platform.startswith("linux"):
    from bridge.platform.linux import (
        CANCEL_SIGNALS,
        NAME,
        NOFOLLOW,
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
        stop_signals,
        sync_file,
        tcp_listener_owner,
        tcp_peer_owner,
        try_lock,
    )
else:
    raise UnsupportedPlatform(f"oauth-bridge runs on Linux and Windows, not on {sys.platform}")

__all__ = [
    "CANCEL_SIGNALS",
    "NAME",
    "NOFOLLOW",
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
    "stop_signals",
    "sync_file",
    "tcp_listener_owner",
    "tcp_peer_owner",
    "try_lock",
]
