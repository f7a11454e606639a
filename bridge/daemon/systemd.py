"""Speak systemd's socket activation and sd_notify protocols, with the stdlib only."""

# This module sits on the daemon's start-up path: keep its imports cheap
# (no aiohttp, no pydantic). The protocols are small enough that libsystemd is
# not worth a dependency: see sd_listen_fds(3) and sd_notify(3).

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

__all__ = ["LISTEN_FDS_START", "Notifier", "inherited_sockets"]

logger = logging.getLogger(__name__)

#: The first file descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3

_ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

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

# A stuck service manager must not stall the event loop for long.
_NOTIFY_TIMEOUT = 1.0


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


class Notifier:
    """Send sd_notify(3) messages to the service manager, if there is one."""

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        """Notify the datagram socket at ``address`` ('/path' or '@abstract')."""
        self._address: str | bytes | None = None
        if address and address[0] == "@":
            # An abstract socket: '@' stands for the leading NUL byte.
            self._address = b"\0" + address[1:].encode()
        elif address and address[0] == "/":
            self._address = address
        elif address:
            # e.g. "vsock:..." addresses, meant for virtual machines.
            logger.debug("unsupported NOTIFY_SOCKET=%r; notifications disabled", address)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read NOTIFY_SOCKET and the watchdog settings, and unset them."""
        env = os.environ if environ is None else environ
        # Pop them so that children cannot impersonate the daemon's readiness
        # or watchdog (and NotifyAccess=main would reject them anyway).
        address, usec, watchdog_pid = (env.pop(name, None) for name in _NOTIFY_VARIABLES)
        watchdog_usec = _parse_int(usec)
        if watchdog_pid is not None and _parse_int(watchdog_pid) != os.getpid():
            watchdog_usec = None
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """Tell whether a service manager listens for notifications."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Return the watchdog timeout in seconds, or None when there is no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000

    def notify(self, *fields: str) -> None:
        """Send the fields ("READY=1", "STATUS=...") as one datagram."""
        if self._address is None or not fields:
            return
        # One field a line: a newline inside a value would start a bogus field.
        message = "\n".join(field.replace("\n", " ") for field in fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_NOTIFY_TIMEOUT)
                sock.connect(self._address)
                sock.sendall(message.encode())
        except OSError as error:
            # Notifications are advisory; losing one must not take the daemon down.
            logger.debug("sd_notify to %r failed: %s", self._address, error)
