"""Speak systemd's socket activation and sd_notify protocols, with the stdlib only."""

# This module sits on the daemon's start-up path: keep its imports cheap
# (no aiohttp, no pydantic). The protocols are small enough that libsystemd is
# not worth a dependency: see sd_listen_fds(3) and sd_notify(3).

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

# Socket activation is the platform's (how Linux hands the daemon its listeners); named
# here too, beside sd_notify, where the daemon's side of systemd has always been.
from bridge.platform.systemd_activation import LISTEN_FDS_START, inherited_sockets

__all__ = ["LISTEN_FDS_START", "Notifier", "inherited_sockets"]

logger = logging.getLogger(__name__)

_NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# A stuck service manager must not stall the event loop for long.
_NOTIFY_TIMEOUT = 1.0


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


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
