"""Find the running daemon, or start one in the background: never two."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from bridge.client.transport import ControlClient
from bridge.errors import (
    BridgeError,
    DaemonNotAnswering,
    DaemonNotRunning,
    DaemonUnavailable,
    ExitCode,
    UsageError,
)
from bridge.paths import (
    Paths,
    check_private_dir,
    ensure_private_dir,
    ensure_state_dir,
    read_daemon_json,
)
from bridge.platform import NOFOLLOW, control_exists, detached, try_lock
from bridge.platform import lock as lock_file

if TYPE_CHECKING:
    import subprocess

START_DEADLINE_SECONDS = 15.0
# A daemon that runs (daemon.json names a live `serve`) answers its status in milliseconds:
# past this it is hung or stopped, and said so, rather than waited on.
STATUS_TIMEOUT_SECONDS = 3.0
# With no daemon known to run, the socket may be systemd's, which starts the daemon as we
# wait (socket activation): its start, imports included, gets this long.
ACTIVATION_TIMEOUT_SECONDS = 15.0
# What `serve` imports beyond the standard library: an interpreter without them cannot
# run the daemon, and another (the `oauth-bridge` on PATH) must.
DAEMON_PACKAGES = ("aiohttp", "pydantic", "yarl", "platformdirs")
COMMAND = "oauth-bridge"
# Starts refused with exit 3 (the lock or the port taken) are tried this many times.
START_ATTEMPTS = 3
POLL_SECONDS = 0.01
# How often a start looks for the new daemon's daemon.json: a cold login waits on this,
# and a look is one small file read (about 150 while a daemon starts, on the other core).
READY_POLL_SECONDS = 0.002
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


def running_daemon(paths: Paths, *, timeout: float | None = None) -> dict[str, Any] | None:
    """Return the status of the daemon that answers on control.sock, or None.

    Asking the socket rather than reading daemon.json first also wakes a daemon that
    systemd socket-activates: its socket answers before any daemon.json exists. A socket
    that takes a connection but gives no answer is no "not running": DaemonNotAnswering
    names the daemon that holds it (DaemonUnavailable when none is known).
    """
    if not control_exists(paths.control_socket):
        return None
    # The state and the pasted code go through this socket: only to a dir of our own.
    check_private_dir(paths.runtime_dir)
    holder = daemon_pid(paths)
    if timeout is None:
        timeout = STATUS_TIMEOUT_SECONDS if holder is not None else ACTIVATION_TIMEOUT_SECONDS
    try:
        answer = ControlClient(paths.control_socket).request("GET", "/v1/status", timeout=timeout)
    except DaemonUnavailable as exc:
        if exc.timed_out:
            raise not_answering(paths, holder, timeout) from None
        return None  # nothing listens: a socket file left behind
    if answer.status != 200 or not isinstance(answer.body, dict):
        return None
    status: dict[str, Any] = answer.body
    return status


def daemon_pid(paths: Paths) -> int | None:
    """The pid daemon.json names, if that process still runs ``serve``; else None."""
    info = read_daemon_json(paths.daemon_json) or {}
    pid = info.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            arguments = handle.read().split(b"\0")
    except OSError:
        return None  # gone: a daemon killed before it could remove its files
    return pid if b"serve" in arguments else None  # else the pid was reused


def process_stopped(pid: int) -> bool:
    """Say whether ``pid`` is stopped (SIGSTOP, a debugger), as /proc says."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def not_answering(paths: Paths, pid: int | None, timeout: float) -> DaemonUnavailable:
    """Say that the control socket took a connection and gave no answer within ``timeout``."""
    socket_path = paths.control_socket
    if pid is None:
        return DaemonUnavailable(
            f"something holds {socket_path} but gave no answer within {timeout:g}s, and "
            f"{paths.daemon_json} names no running daemon (a daemon systemd could not "
            "start, or one that is hung): 'systemctl --user status oauth-bridge' tells, "
            f"or remove {socket_path} if no oauth-bridge runs",
            timed_out=True,
        )
    if process_stopped(pid):
        return DaemonNotAnswering(
            f"the oauth-bridge daemon that holds {socket_path} is not answering (pid {pid}): "
            f"it is stopped; 'kill -CONT {pid}' resumes it, 'oauth-bridge stop' or "
            f"'kill -9 {pid}' ends it",
            pid=pid,
            stopped=True,
        )
    return DaemonNotAnswering(
        f"the oauth-bridge daemon that holds {socket_path} is not answering (pid {pid}): "
        f"no answer within {timeout:g}s; 'kill {pid}' or 'oauth-bridge stop' ends it "
        f"('kill -9 {pid}' if it does not go)",
        pid=pid,
    )


class _Spawned(NamedTuple):
    """A ``serve`` started by start_early, and the start lock held for it until it answers."""

    lock: IO[str]
    offset: int
    process: subprocess.Popen[bytes]


# Starts begun by start_early, by control socket: ensure_daemon waits for these.
_EARLY: dict[Path, _Spawned] = {}


def start_early(paths: Paths) -> None:
    """Spawn ``serve`` now when no daemon can be running; ``ensure_daemon`` waits for it.

    A command that will need the daemon calls this before importing the rest of itself:
    the daemon's imports (most of a cold start) then run on the other core while the
    command's own do. Only where nothing can answer (no control socket: no daemon and
    no systemd socket) and no other tool is starting one (the start lock is free);
    otherwise, and on any failure, it does nothing, and ``ensure_daemon`` finds, starts
    or reports as it always did, in its turn.
    """
    if paths.control_socket in _EARLY:
        return
    try:
        if control_exists(paths.control_socket):
            return
        ensure_private_dir(paths.runtime_dir)
        ensure_state_dir(paths.state_dir)
        lock = paths.start_lock_file.open("a+")
    except (BridgeError, OSError):
        return
    try:
        # Never wait here: a tool that holds the lock is starting one, which we then use.
        if try_lock(lock) and not control_exists(paths.control_socket):
            offset, process = _spawn(paths.daemon_log, paths)
            _EARLY[paths.control_socket] = _Spawned(lock, offset, process)
            return
    except (BridgeError, OSError):
        pass
    lock.close()


def ensure_daemon(paths: Paths, *, start: bool) -> dict[str, Any]:
    """Return the running daemon's daemon.json, starting a daemon first if allowed."""
    early = _EARLY.pop(paths.control_socket, None)
    if early is not None:
        with early.lock:  # taken when it was spawned: held until it answers
            return _start(paths, spawned=(early.offset, early.process))
    info = running_daemon(paths)
    if info is not None:
        return info
    if not start:
        raise DaemonNotRunning(str(paths.control_socket))
    ensure_private_dir(paths.runtime_dir)
    ensure_state_dir(paths.state_dir)
    with paths.start_lock_file.open("a+") as lock:
        # Concurrent callers queue here: the first starts the daemon, the rest find it.
        lock_file(lock)
        info = running_daemon(paths)
        if info is not None:
            return info
        return _start(paths)


def _start(
    paths: Paths, *, spawned: tuple[int, subprocess.Popen[bytes]] | None = None
) -> dict[str, Any]:
    """Spawn ``serve`` (or take the one ``spawned`` already) and wait for it.

    While an old daemon still holds the lock, try again.
    """
    log_path = paths.daemon_log
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    for attempt in range(1, START_ATTEMPTS + 1):
        if spawned is not None:
            (offset, process), spawned = spawned, None
        else:
            offset, process = _spawn(log_path, paths)
        while time.monotonic() < deadline:
            info = read_daemon_json(paths.daemon_json)
            if info is not None and info.get("pid") == process.pid:
                status = running_daemon(paths)
                if status is not None:
                    return status
            code = process.poll()
            if code is not None:
                break
            time.sleep(READY_POLL_SECONDS)
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
    said = f"the daemon did not start (exit {code}); the end of {log_path}:\n" + _tail(
        log_path, offset
    )
    if code == ExitCode.USAGE:
        # A bad configuration (or an unusable dir): the caller's to fix, as serve says.
        raise UsageError(said)
    raise DaemonUnavailable(said)


def _spawn(log_path: Path, paths: Paths) -> tuple[int, subprocess.Popen[bytes]]:
    import subprocess  # here: only a call that starts the daemon needs it

    command = serve_command()  # before the log is opened: a refusal leaves no file behind
    rotate(log_path)
    # O_NOFOLLOW: a symlink planted where the log goes must not be written through.
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | NOFOLLOW, 0o600)
    except OSError as exc:
        raise DaemonUnavailable(
            f"cannot open the daemon's log {log_path}: {exc.strerror}"
            + (" (it is a symlink: remove it)" if log_path.is_symlink() else "")
        ) from None
    offset = os.lseek(fd, 0, os.SEEK_END)
    with os.fdopen(fd, "ab") as log:
        process = subprocess.Popen(
            [*command, *idle_exit_argument()],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            env=daemon_environment(paths=paths),
            **detached(),  # it outlives this command and its terminal (a new session)
            close_fds=True,
        )
    return offset, process


def missing_daemon_packages() -> list[str]:
    """The daemon's packages this interpreter cannot find; it looks, and imports none."""
    import importlib.util

    missing = []
    for name in DAEMON_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def serve_command() -> list[str]:
    """The command that runs ``serve``: this interpreter when it can, else ``oauth-bridge``.

    A tool's own environment may hold only the standard library and bridge.client (a
    vendored copy, a PYTHONPATH): its interpreter would fail at its first import.
    """
    missing = missing_daemon_packages()
    if sys.executable and not missing:
        # -P: never import a `bridge` from the caller's working directory.
        return [sys.executable, "-P", "-m", "bridge", "serve"]
    import shutil  # here: only a start from such an environment needs it

    found = shutil.which(COMMAND)
    if found is not None:
        return [found, "serve"]
    interpreter = sys.executable or "this process's interpreter"
    lacks = f"does not have its packages ({', '.join(missing)})" if missing else "is unknown"
    raise DaemonUnavailable(
        f"cannot start the oauth-bridge daemon: this Python ({interpreter}) {lacks}, and "
        f"no '{COMMAND}' command is on PATH; install oauth-bridge where PATH finds it "
        "(pipx install oauth-bridge, say), or start the daemon yourself with "
        "'oauth-bridge serve'"
    )


def daemon_environment(
    environ: dict[str, str] | None = None, *, paths: Paths | None = None
) -> dict[str, str]:
    """The caller's environment less what speaks for the caller's service manager.

    With ``paths``, the daemon is pointed at them: the one started for a caller's runtime
    and state dirs (``Bridge(paths=...)``) must serve those, not the environment's.
    """
    env = dict(os.environ if environ is None else environ)
    for name in SERVICE_MANAGER_VARIABLES:
        env.pop(name, None)
    if paths is not None:
        env["OAUTH_BRIDGE_RUNTIME_DIR"] = str(paths.runtime_dir)
        env["OAUTH_BRIDGE_STATE_DIR"] = str(paths.state_dir)
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
            return not try_lock(handle)
    except OSError:
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
