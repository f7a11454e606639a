"""systemd's socket activation (sd_listen_fds(3)), with the stdlib only: the sockets it passed us.

In the platform package because it is how Linux's service manager hands the daemon its
listeners (``bridge.platform.service_sockets``); sd_notify, the daemon's side of the
same protocol family, is ``bridge.daemon.systemd``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

__all__ = ["LISTEN_FDS_START", "inherited_sockets"]

logger = logging.getLogger("bridge.daemon.systemd")  # the name its log lines always had

#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

_ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

# How our units name their sockets (FileDescriptorName=), and the name a socket
# gets when systemd sent none: systemd-socket-activate without --fdname, or a
# unit edited by hand, passes "unknown" or nothing at all.
_NAME_BY_FAMILY = {
    # getattr: Windows' socket module has no AF_UNIX (and systemd passes it nothing).
    getattr(socket, "AF_UNIX", -1): "control",
    socket.AF_INET: "http",
    socket.AF_INET6: "http",
}
_UNNAMED = frozenset({"", "unknown"})


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def inherited_sockets(
    environ: MutableMapping[str, str] | None = None,
) -> dict[str, list[socket.socket]] | None:
    """Return the sockets systemd passed to this process, grouped by name."""
    env = os.environ if environ is None else environ
    # Pop before anything else: a child process (a browser opened by the
    # daemon, say) must never believe the fds were meant for it.
    pid, count, names = (env.pop(name, None) for name in _ACTIVATION_VARIABLES)
    if count is None:
        return None
    if _parse_int(pid) != os.getpid():
        logger.debug("LISTEN_FDS is for process %s, not this one; ignoring it", pid)
        return None
    n = _parse_int(count)
    if n is None or n < 0:
        logger.warning("ignoring malformed LISTEN_FDS=%r", count)
        return None

    fd_names = names.split(":") if names else []
    groups: dict[str, list[socket.socket]] = {}
    for index, fd in enumerate(range(LISTEN_FDS_START, LISTEN_FDS_START + n)):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as error:
            # A FIFO or a closed fd is not something this daemon can serve on;
            # leave it alone rather than fail the whole start-up.
            logger.warning("ignoring inherited fd %d: %s", fd, error)
            continue
        # systemd hands the fds over inheritable; our children must not keep
        # the listeners open after we exit.
        sock.set_inheritable(False)
        name = fd_names[index] if index < len(fd_names) else ""
        if name in _UNNAMED:
            name = _NAME_BY_FAMILY.get(sock.family, "unknown")
        groups.setdefault(name, []).append(sock)
    return groups
