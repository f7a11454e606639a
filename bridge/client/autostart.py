"""Find the running daemon, or start one in the background: never two."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.client.transport import ControlClient
from bridge.errors import DaemonUnavailable, ExitCode
from bridge.paths import (
    Paths,
    check_private_dir,
    ensure_private_dir,
    ensure_state_dir,
    read_daemon_json,
)

if TYPE_CHECKING:
    import subprocess

START_DEADLINE_SECONDS = 15.0
# Starts refused with exit 3 (the lock or the port taken) are tried this many times.
START_ATTEMPTS = 3
POLL_SECONDS = 0.01
# An auto-started daemon exits after this long with nothing under way: nobody stops it
# otherwise, and the next tool command starts a new one in a fraction of a second.
AUTO_IDLE_EXIT_SECONDS = 600
# An auto-started daemon's log is rotated at each start past this size (one old copy).
MAX_LOG_BYTES = 1 << 20
# What a service manager hands the process it runs: a tool started by one (a unit's
# ExecStart=, a socket-activated helper) would pass them on, and the daemon would tell
# that manager it is ready, ping its watchdog, or take its sockets for its own.
SERVICE_MANAGER_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


def running_daemon(paths: Paths) -> dict[str, Any] | None:
    """Return the status of the daemon that answers on control.sock, or None.

    Asking the socket rather than reading daemon.json first also wakes a daemon that
    systemd socket-activates: its socket answers before any daemon.json exists.
    """
    if not paths.control_socket.exists():
        return None
    # The state and the pasted code go through this socket: only to a dir of our own.
    check_private_dir(paths.runtime_dir)
    try:
        answer = ControlClient(paths.control_socket).request("GET", "/v1/status", timeout=15)
    except DaemonUnavailable:
        return None
    if answer.status != 200 or not isinstance(answer.body, dict):
        return None
    status: dict[str, Any] = answer.body
    return status


def ensure_daemon(paths: Paths, *, start: bool) -> dict[str, Any]:
    """Return the running daemon's daemon.json, starting a daemon first if allowed."""
    info = running_daemon(paths)
    if info is not None:
        return info
    if not start:
        raise DaemonUnavailable(
            "no oauth-bridge daemon is running; start one with 'oauth-bridge serve', "
            "or leave out --no-start to have one started"
        )
    ensure_private_dir(paths.runtime_dir)
    ensure_state_dir(paths.state_dir)
    with paths.start_lock_file.open("a+") as lock:
        # Concurrent callers queue here: the first starts the daemon, the rest find it.
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = running_daemon(paths)
        if info is not None:
            return info
        return _start(paths)


def _start(paths: Paths) -> dict[str, Any]:
    """Spawn ``serve`` and wait for it; while an old daemon still holds the lock, try again."""
    log_path = paths.daemon_log
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    for attempt in range(1, START_ATTEMPTS + 1):
        offset, process = _spawn(log_path)
        while time.monotonic() < deadline:
            info = read_daemon_json(paths.daemon_json)
            if info is not None and info.get("pid") == process.pid:
                status = running_daemon(paths)
                if status is not None:
                    return status
            code = process.poll()
            if code is not None:
                break
            time.sleep(POLL_SECONDS)
        else:
            raise DaemonUnavailable(
                f"the daemon did not become ready within {START_DEADLINE_SECONDS:.0f}s; "
                f"the end of {log_path}:\n" + _tail(log_path, offset)
            )
        if code == ExitCode.UNAVAILABLE and attempt < START_ATTEMPTS:
            # Most likely another daemon holds the lock: one starting (a race we lost) or
            # one shutting down. Use it if it answers; otherwise try again once it let go.
            while time.monotonic() < deadline and lock_held(paths):
                status = running_daemon(paths)
                if status is not None:
                    return status
                time.sleep(POLL_SECONDS)
            if time.monotonic() < deadline:
                continue
        break
    raise DaemonUnavailable(
        f"the daemon did not start (exit {code}); the end of {log_path}:\n"
        + _tail(log_path, offset)
    )


def _spawn(log_path: Path) -> tuple[int, subprocess.Popen[bytes]]:
    import subprocess  # here: only a call that starts the daemon needs it

    rotate(log_path)
    # O_NOFOLLOW: a symlink planted where the log goes must not be written through.
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise DaemonUnavailable(
            f"cannot open the daemon's log {log_path}: {exc.strerror}"
            + (" (it is a symlink: remove it)" if log_path.is_symlink() else "")
        ) from None
    offset = os.lseek(fd, 0, os.SEEK_END)
    with os.fdopen(fd, "ab") as log:
        process = subprocess.Popen(
            # -P: never import a `bridge` from the caller's working directory.
            [sys.executable, "-P", "-m", "bridge", "serve", *idle_exit_argument()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            env=daemon_environment(),
            start_new_session=True,  # detached: it outlives this command and its terminal
            close_fds=True,
        )
    return offset, process


def daemon_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment less what speaks for the caller's service manager."""
    env = dict(os.environ if environ is None else environ)
    for name in SERVICE_MANAGER_VARIABLES:
        env.pop(name, None)
    return env


def idle_exit_argument(environ: dict[str, str] | None = None) -> list[str]:
    """Have an auto-started daemon exit when idle, unless the environment says otherwise."""
    env = os.environ if environ is None else environ
    if env.get("OAUTH_BRIDGE_IDLE_EXIT_SECONDS"):
        return []  # the daemon reads it itself
    return ["--idle-exit", str(AUTO_IDLE_EXIT_SECONDS)]


def rotate(log_path: Path) -> None:
    """Keep an auto-started daemon's log small: past MAX_LOG_BYTES it becomes daemon.log.1."""
    try:
        if log_path.stat().st_size > MAX_LOG_BYTES:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    except OSError:
        pass  # no log yet, or not ours to move: the open below says what is wrong


def lock_held(paths: Paths) -> bool:
    """Say whether a daemon (running, starting or stopping) holds the per-user lock."""
    try:
        with paths.lock_file.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def _tail(path: Path, offset: int, lines: int = 15) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "  (no log)"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"  {line}" for line in tail) or "  (the log is empty)"
