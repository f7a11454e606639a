"""The project's one error base: a message for people and the exit code the contract gives it."""

from __future__ import annotations

# Exit codes from the contract (CONTRACT.md, "CLI for desktop tools").
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 10
EXIT_DENIED = 11
EXIT_EXPIRED = 12
EXIT_CANCELLED = 13


class BridgeError(Exception):
    """An error the CLI reports as one line for people, without a traceback."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(BridgeError):
    """Bad usage or bad configuration: the message names the file, key or flag."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """The configuration file, environment or flags hold a bad value."""


class DaemonUnavailable(BridgeError):
    """No daemon answers, or one could not be started (the port is taken, say)."""

    exit_code = EXIT_UNAVAILABLE


class UnsafeRuntimeDir(UsageError):
    """The runtime dir is owned by someone else or open to others."""
