"""The project's exit codes and its one error base, shared by the daemon and the tools.

    BridgeError                 a message for people, and the exit code it ends the CLI with
    ├── UsageError              2: bad usage or bad configuration
    │   ├── ConfigError         the config file, environment or flags hold a bad value
    │   └── UnsafeDir           the runtime or state dir is someone else's, or open to others
    │                           (UnsafeRuntimeDir: its old name, the same class)
    ├── DaemonUnavailable       3: no daemon answers, or none could be started
    │   ├── DaemonNotRunning    none runs, and the call was told not to start one
    │   └── DaemonNotAnswering  a daemon holds the control socket but does not answer
    └── ControlPlaneRefused     10: the control plane refused or failed a call the daemon made

``bridge.client`` raises these, and two of its own: ``LoginNotFound`` (a UsageError) and
``PortTaken`` (a DaemonUnavailable); it exports every one of them.

How a login ended is a value (its status), never an exception.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The contract's exit codes of the CLI."""

    OK = 0
    # doctor found a problem; install-service could not finish (systemctl failed, or is
    # missing, or there is no user manager to talk to).
    PROBLEMS = 1
    USAGE = 2  # bad usage or bad configuration; a refusal to overwrite what a user edited
    UNAVAILABLE = 3  # no daemon answers, or none could be started
    FAILED = 10  # a login failed; the control plane refused or failed a call
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


class DaemonNotRunning(DaemonUnavailable):
    """No daemon runs, and the call was told not to start one (``start=False``).

    ``message`` speaks to a library caller (``start=False``); a command line has its own
    word for that, which ``for_command_line`` puts in.
    """

    def __init__(self, control_socket: str) -> None:
        self.reason = f"no oauth-bridge daemon is running (nothing answers on {control_socket})"
        self.remedy = "start one with 'oauth-bridge serve'"
        super().__init__(
            f"{self.reason}; {self.remedy}, or leave out start=False to have one started"
        )
        self.control_socket = control_socket

    def for_command_line(self, flag: str | None) -> str:
        """The message for a CLI user: ``flag`` is the option that said not to start one."""
        other = f", or leave out {flag} to have one started" if flag else ""
        return f"{self.reason}; {self.remedy}{other}"


class DaemonNotAnswering(DaemonUnavailable):
    """A daemon holds the control socket (its pid in daemon.json) but does not answer."""

    def __init__(self, message: str, *, pid: int, stopped: bool = False) -> None:
        super().__init__(message, timed_out=True)
        self.pid = pid
        # True when the process is stopped (SIGSTOP, a debugger): only SIGCONT or
        # SIGKILL reach it, a SIGTERM waits until it is continued.
        self.stopped = stopped


class UnsafeDir(UsageError):
    """The runtime dir or the state dir is owned by someone else, or open to others."""


# Its first name, from when only the runtime dir was checked: the same class.
UnsafeRuntimeDir = UnsafeDir


class ControlPlaneRefused(BridgeError):
    """The control plane refused or failed a call the daemon made for us."""

    exit_code = ExitCode.FAILED

    def __init__(
        self, message: str, *, error: str, control_plane_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.error = error
        self.control_plane_status = control_plane_status
