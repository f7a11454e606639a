"""What Linux and macOS share: the control socket (AF_UNIX), flock, signals, uid-owned 0700 dirs.

Not a platform of its own: ``linux`` and ``macos`` take these and add what their kernels
differ in (a control peer's credentials, flushing a file to disk, whether a process is
gone, who owns a TCP socket). Standard library only: a tool's process imports this.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bridge.errors import DaemonUnavailable, UnsafeRuntimeDir

if TYPE_CHECKING:
    import asyncio
    import logging

# What ends a tool's wait as Ctrl-C does (a kill, the terminal gone).
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
# os.open flag that refuses to follow a symlink planted where a file goes.
NOFOLLOW = os.O_NOFOLLOW

# -- the control channel: a Unix socket in the 0700 runtime dir -------------------------


def control_address(runtime_dir: Path) -> Path:
    """Where the daemon's control API listens: ``control.sock`` in the runtime dir."""
    return runtime_dir / "control.sock"


def control_exists(address: Path) -> bool:
    """Say whether something (a daemon, systemd's socket, a stale file) is at ``address``."""
    return address.exists()


def connect(address: Path, timeout: float) -> socket.socket:
    """A blocking, connected channel to the control socket (sendall, recv, close)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(str(address))
    except BaseException:
        sock.close()
        raise
    return sock


async def open_connection(address: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio's streams on the control socket."""
    import asyncio  # here: a CLI call that never awaits should not pay for asyncio

    return await asyncio.open_unix_connection(str(address))


def listen_control(address: Path) -> socket.socket:
    """Bind the control socket 0600 from the start: umask, not a chmod after the fact."""
    # A stale socket of a crashed daemon: we hold the lock, so it is ours to remove.
    address.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(address))
    except OSError as exc:
        sock.close()
        raise DaemonUnavailable(
            f"cannot create the control socket {address}: {exc.strerror}"
        ) from None
    finally:
        os.umask(old)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def own_identity() -> int:
    """This process's uid: the one a control peer must have."""
    return os.getuid()


def effective_uid() -> int:
    """The uid that /proc/net/tcp shows for the sockets this process makes."""
    return os.geteuid()


def same_user(peer: int | str | None, own: int | str) -> bool:
    """Say whether a control peer is this user (a peer that cannot be told is not)."""
    return peer is not None and peer == own


# -- locks, and a descriptor to sync ---------------------------------------------------


def try_lock(handle: IO[Any]) -> bool:
    """Take an exclusive lock on an open file without waiting; False when it is held."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock(handle: IO[Any]) -> None:
    """Take an exclusive lock on an open file, waiting for it; it goes with the file."""
    fcntl.flock(handle, fcntl.LOCK_EX)


def open_for_sync(path: Path | str) -> int:
    """A descriptor of our own on a file another library writes, for sync_file."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


# -- the daemon's process ---------------------------------------------------------------


def detached() -> dict[str, Any]:
    """subprocess.Popen's options for a daemon that outlives its starter and its terminal."""
    return {"start_new_session": True}


def harden_process(log: logging.Logger, *, open_files_ceiling: int = 65536) -> None:
    """Files private to the user, no core dump, as many open files as the hard limit allows.

    ``open_files_ceiling`` is the soft limit asked for when the hard one is unlimited.
    """
    import resource

    os.umask(0o077)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as exc:  # a seccomp filter may refuse it: say so, go on
        log.warning("could not turn off core dumps: %s", exc)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, open_files_ceiling)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)


def stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` on SIGTERM or SIGINT; return what undoes that."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)

    def undo() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    return undo


# -- private directories: owned by this uid, mode 0700, parents nobody else can change --


def check_private_dir(path: Path, variable: str = "OAUTH_BRIDGE_RUNTIME_DIR") -> None:
    """Refuse ``path`` if it is not a directory of this user's that others cannot enter.

    Its parents count too: a parent another user may write (without the sticky bit that
    /tmp has) lets them swap the directory after this check, and receive a state.
    """
    check_parents(path)
    try:
        info = path.lstat()
    except OSError as exc:
        raise UnsafeRuntimeDir(f"cannot use {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeRuntimeDir(f"{path} is not a directory: refusing to use it")
    if info.st_uid != os.getuid():
        raise UnsafeRuntimeDir(
            f"{path} is owned by uid {info.st_uid}, not by you (uid {os.getuid()}): "
            f"refusing to use it; set {variable} to a directory of your own"
        )
    if info.st_mode & 0o077:
        raise UnsafeRuntimeDir(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): "
            f"refusing to use it; run 'chmod 700 {path}'"
        )


def _unmapped_owner() -> set[int]:
    """Return the uid files of unmapped owners show as in a user namespace, if we are in one.

    Under systemd's PrivateUsers=yes (the sandbox drop-in) root's /run/user shows as
    owned by the overflow uid (65534). Such a parent is trusted as root's would be; it
    must still not be writable by others. (A Linux matter: macOS has no such file, and
    no such owner.)
    """
    try:
        with open("/proc/self/uid_map", encoding="ascii") as handle:
            mapping = handle.read().split()
        if mapping == ["0", "0", "4294967295"]:
            return set()  # the initial namespace: owners are what they say
        with open("/proc/sys/kernel/overflowuid", encoding="ascii") as handle:
            return {int(handle.read())}
    except (OSError, ValueError):
        return set()


def check_parents(path: Path) -> None:
    """Refuse a path whose parents another user could change (rename, replace, link).

    Each component is looked at itself (lstat), not through it: a symlink on the way is
    refused unless its owner is trusted (root's /var/run -> /run is fine; another user's
    link in /tmp could be pointed elsewhere at any time), and the directories it leads
    to are checked as the real path's parents.
    """
    trusted = {0, os.getuid(), *_unmapped_owner()}
    absolute = path.absolute()
    real = Path(os.path.realpath(absolute.parent))
    seen: set[Path] = set()
    for parent in [*absolute.parents, real, *real.parents]:
        if parent in seen:
            continue
        seen.add(parent)
        try:
            info = parent.lstat()
        except OSError:
            continue  # not there yet: it will be created by us, 0700
        foreign = info.st_uid not in trusted
        if stat.S_ISLNK(info.st_mode):
            if foreign:
                raise UnsafeRuntimeDir(
                    f"{path} is reached through {parent}, a symlink owned by uid "
                    f"{info.st_uid}: its owner could point it elsewhere; use a directory "
                    "of your own (OAUTH_BRIDGE_RUNTIME_DIR, OAUTH_BRIDGE_STATE_DIR)"
                )
            continue  # a link's mode means nothing; where it leads is checked as `real`
        shared = bool(info.st_mode & 0o022) and not info.st_mode & stat.S_ISVTX
        if foreign or shared:
            whose = f"owned by uid {info.st_uid}" if foreign else "writable by others"
            raise UnsafeRuntimeDir(
                f"{path} is under {parent}, which is {whose}: another user could swap "
                "it; use a directory of your own (OAUTH_BRIDGE_RUNTIME_DIR, "
                "OAUTH_BRIDGE_STATE_DIR)"
            )
