"""The project's exit codes and its one error base, shared by the daemon and the tools.

    BridgeError                 a message for people, and the exit code it ends the CLI with
    ├── UsageError              2: bad usage or bad configuration
    │   ├── ConfigError         the config file, environment or flags hold a bad value
    │   └── UnsafeRuntimeDir    the runtime or state dir is someone else's, or open to others
    ├── DaemonUnavailable       3: no daemon answers, or none could be started
    └── ControlPlaneRefused     10: the control plane refused or failed a call the daemon made

How a login ended is a value (its status), never an exception.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The contract's exit codes of the CLI."""

    OK = 0
    PROBLEMS = 1  # doctor found a problem; install-service could not finish
    USAGE = 2
    UNAVAILABLE = 3
    FAILED = 10
    DENIED = 11
    EXPIRED = 12
    CANCELLED = 13
    INTERRUPTED = 130  # Ctrl-C outside a wait (a wait cancels its login and exits 13)


# The exit code for each terminal login status (a wait that runs out is EXPIRED too).
EXIT_FOR_STATUS: dict[str, ExitCode] = {
    "succeeded": ExitCode.OK,
    "failed": ExitCode.FAILED,
    "denied": ExitCode.DENIED,
    "expired": ExitCode.EXPIRED,
    "cancelled": ExitCode.CANCELLED,
}


class BridgeError(Exception):
    """An error the CLI reports as one line for people, without a traceback."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(BridgeError):
    """Bad usage or bad configuration: the message names the file, key or flag."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """The configuration file, environment or flags hold a bad value."""


class DaemonUnavailable(BridgeError):
    """No daemon answers, or one could not be started (the port is taken, say)."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        # True when a daemon was reached but its answer did not come in time.
        self.timed_out = timed_out


class UnsafeRuntimeDir(UsageError):
    """The runtime dir is owned by someone else or open to others."""


class ControlPlaneRefused(BridgeError):
    """The control plane refused or failed a call the daemon made for us."""

    exit_code = ExitCode.FAILED

    def __init__(
        self, message: str, *, error: str, control_plane_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.control_plane_status = control_plane_status
