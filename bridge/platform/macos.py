"""macOS: LOCAL_PEERCRED, F_FULLFSYNC, launchd's sockets, 104-byte socket paths; the rest is POSIX.

The control socket, flock, signals and the 0700 dirs are ``posix``'s, as on Linux; what
differs is here. Standard library only: tools' processes import this too. Each system
call is a thin wrapper over a pure function (``parse_xucred``, ``check_socket_path``)
that the tests drive on Linux, and the native library ``launch_activate_socket`` calls
is injectable, so a stub built from ``tests/macos/stub/launch_stub.c`` stands in for
libSystem.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bridge.errors import UnsafeRuntimeDir
from bridge.platform import posix
from bridge.platform.posix import (
    CANCEL_SIGNALS,
    NOFOLLOW,
    check_parents,
    check_private_dir,
    control_address,
    detached,
    effective_uid,
    lock,
    open_connection,
    open_for_sync,
    own_identity,
    same_user,
    stop_signals,
    try_lock,
)

if TYPE_CHECKING:
    import logging

__all__ = [
    "CANCEL_SIGNALS",
    "F_FULLFSYNC",
    "LAUNCHD_SOCKETS_VARIABLE",
    "LOCAL_PEERCRED",
    "NAME",
    "NOFOLLOW",
    "OPEN_MAX",
    "SERVICE_MANAGER",
    "SERVICE_MODULE",
    "SOL_LOCAL",
    "SUN_PATH_MAX",
    "XUCRED_SIZE",
    "XUCRED_VERSION",
    "NotLaunchedByLaunchd",
    "PeerCredentialsError",
    "SocketPathTooLong",
    "check_parents",
    "check_private_dir",
    "check_socket_path",
    "connect",
    "control_address",
    "control_exists",
    "default_runtime_dir",
    "detached",
    "effective_uid",
    "harden_process",
    "launch_activate_socket",
    "launchd_sockets",
    "listen_control",
    "lock",
    "open_connection",
    "open_for_sync",
    "own_identity",
    "parse_xucred",
    "peer_identity",
    "peer_uid",
    "process_exited",
    "same_user",
    "service_sockets",
    "stop_signals",
    "sync_file",
    "tcp_listener_owner",
    "tcp_peer_owner",
    "try_lock",
]

NAME = "macos"
# What install-service runs: the LaunchAgent.
SERVICE_MODULE = "bridge.service.launchd_run"
# Who may hand the daemon its listening sockets, and where they are configured.
SERVICE_MANAGER = "launchd"
APP_NAME = "oauth-bridge"

# --- the peer of a Unix socket: LOCAL_PEERCRED --------------------------------

#: <sys/un.h>: the option level of AF_UNIX sockets (Linux has no such level; its
#: peer check is SOL_SOCKET / SO_PEERCRED).
SOL_LOCAL = getattr(socket, "SOL_LOCAL", 0)
#: <sys/un.h>: getsockopt(SOL_LOCAL, LOCAL_PEERCRED) fills a struct xucred.
LOCAL_PEERCRED = getattr(socket, "LOCAL_PEERCRED", 0x001)
#: <sys/ucred.h>: the only layout of struct xucred there is.
XUCRED_VERSION = 0
_NGROUPS = 16  # NGROUPS (= NGROUPS_MAX) in <sys/param.h>

# struct xucred { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
# The two pad bytes after the short align cr_groups to 4: offsets 0, 4, 8, 12, size 76
# (checked against gcc's layout of the same struct: tests/macos/stub/xucred_layout.c).
# Native byte order: the bytes come from this machine's kernel.
_XUCRED = struct.Struct(f"=IIh2x{_NGROUPS}I")
#: sizeof(struct xucred): what getsockopt is asked for.
XUCRED_SIZE = _XUCRED.size


class PeerCredentialsError(ValueError):
    """The kernel's answer to LOCAL_PEERCRED is not a struct xucred this module reads."""


def parse_xucred(data: bytes) -> int:
    """Return the effective uid in a struct xucred, refusing a layout this module does not know."""
    if len(data) < XUCRED_SIZE:
        raise PeerCredentialsError(
            f"LOCAL_PEERCRED returned {len(data)} bytes, not a struct xucred ({XUCRED_SIZE} bytes)"
        )
    version, uid, ngroups, *_groups = _XUCRED.unpack_from(data)
    if version != XUCRED_VERSION:
        raise PeerCredentialsError(
            f"LOCAL_PEERCRED returned struct xucred version {version}, "
            f"not {XUCRED_VERSION}: its layout is unknown here"
        )
    if not 0 <= ngroups <= _NGROUPS:
        # A count no kernel writes: the bytes are not the layout read above.
        raise PeerCredentialsError(f"struct xucred has cr_ngroups {ngroups}, over {_NGROUPS}")
    return int(uid)


def peer_uid(sock: socket.socket) -> int:
    """Return the effective uid of the process at the other end of a connected AF_UNIX socket."""
    data = sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE)
    return parse_xucred(data)


# --- durable writes: F_FULLFSYNC -------------------------------------------------

#: <sys/fcntl.h>: fsync(2) on macOS only hands the data to the drive, whose cache may
#: lose it on power loss; fcntl(F_FULLFSYNC) also flushes the drive (fsync(2) says so).
#: Python's fcntl module has the name on darwin only, hence the value here.
F_FULLFSYNC = getattr(fcntl, "F_FULLFSYNC", 51)

# Answers that mean "this file system (SMB, FAT, ...) or kernel has no F_FULLFSYNC";
# any other error (EIO) is a failed flush and is raised.
_NO_FULLFSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOTTY})


class FcntlModule(Protocol):
    """The part of the fcntl module ``sync_file`` calls (a test hands in a fake)."""

    def fcntl(self, fd: int, cmd: int, arg: int = 0, /) -> int: ...


def sync_file(fd: int, *, fcntl_module: FcntlModule | None = None) -> None:
    """Flush ``fd`` to stable storage: F_FULLFSYNC, or fsync where the file system lacks it."""
    module = fcntl if fcntl_module is None else fcntl_module
    command = getattr(module, "F_FULLFSYNC", F_FULLFSYNC)
    try:
        module.fcntl(fd, command)
    except OSError as exc:
        if exc.errno not in _NO_FULLFSYNC:
            raise
        os.fsync(fd)


# --- launchd's sockets: launch_activate_socket(3) ----------------------------------

_LIBSYSTEM = "/usr/lib/libSystem.B.dylib"  # in the dyld shared cache, not on disk


class NotLaunchedByLaunchd(OSError):
    """This process was not started by launchd (launch_activate_socket answered ESRCH)."""


def _libsystem() -> ctypes.CDLL:
    return ctypes.CDLL(_LIBSYSTEM, use_errno=True)


def launch_activate_socket(name: str, *, library: ctypes.CDLL | None = None) -> list[int]:
    """Return the fds launchd holds for the plist's ``Sockets`` entry ``name``.

    ``library`` is libSystem unless given; it provides ``launch_activate_socket`` and
    the ``free`` the array it returns is released with. Raise NotLaunchedByLaunchd
    (ESRCH) when launchd did not start this process, OSError for any other answer
    (ENOENT: no such entry in the plist; EALREADY: already activated).
    """
    lib = _libsystem() if library is None else library
    activate = lib.launch_activate_socket
    activate.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.POINTER(ctypes.c_int)),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    activate.restype = ctypes.c_int
    release = lib.free
    release.argtypes = [ctypes.c_void_p]
    release.restype = None

    fds = ctypes.POINTER(ctypes.c_int)()
    count = ctypes.c_size_t(0)
    # The function returns an errno value itself; it does not set errno.
    error = activate(name.encode(), ctypes.byref(fds), ctypes.byref(count))
    if error != 0:
        message = f"launch_activate_socket({name!r}): {os.strerror(error)}"
        if error == errno.ESRCH:
            raise NotLaunchedByLaunchd(error, message)
        raise OSError(error, message)
    try:
        return [fds[index] for index in range(count.value)]
    finally:
        if fds:
            release(fds)


def launchd_sockets(
    names: Iterable[str], *, library: ctypes.CDLL | None = None
) -> dict[str, list[socket.socket]] | None:
    """Return launchd's listening sockets by ``Sockets`` name, or None when launchd did not start us.

    A name the plist does not have is left out: the daemon binds that listener itself.
    """
    groups: dict[str, list[socket.socket]] = {}
    try:
        for name in names:
            try:
                fds = launch_activate_socket(name, library=library)
            except NotLaunchedByLaunchd:
                return None
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    continue
                raise
            sockets = groups.setdefault(name, [])
            for fd in fds:
                sock = socket.socket(fileno=fd)
                # The daemon's children (a browser) must not keep the listeners open.
                sock.set_inheritable(False)
                sockets.append(sock)
    except BaseException:
        for sock in (sock for group in groups.values() for sock in group):
            sock.close()  # a failed start must not leave launchd's sockets open twice
        raise
    return groups


# --- the runtime dir and macOS's short socket paths ----------------------------------


def default_runtime_dir(home: Path) -> Path:
    """Return platformdirs' macOS ``user_runtime_dir`` for oauth-bridge, without $XDG_RUNTIME_DIR.

    platformdirs (4.x, ``platformdirs/macos.py``) puts it in ~/Library/Caches/TemporaryItems,
    not the per-user $TMPDIR (/var/folders/...); $XDG_RUNTIME_DIR, when set and private,
    replaces the base, as ``bridge.paths.default_paths`` resolves it through platformdirs.
    A launchd plist names paths literally (no variables), so its plan needs this one.
    """
    return home / "Library" / "Caches" / "TemporaryItems" / APP_NAME


#: sizeof(sockaddr_un.sun_path) on macOS (<sys/un.h>), the terminating NUL included:
#: 104, where Linux has 108.
SUN_PATH_MAX = 104


class SocketPathTooLong(ValueError):
    """A Unix socket path does not fit in macOS's sockaddr_un."""

    def __init__(self, path: Path, length: int) -> None:
        super().__init__(
            f"the control socket path {path} is {length} bytes long, but macOS allows "
            f"{SUN_PATH_MAX - 1} ({SUN_PATH_MAX} with the terminating NUL, sockaddr_un's "
            "sun_path); set OAUTH_BRIDGE_RUNTIME_DIR to a shorter directory of your own, "
            "e.g. ~/.oauth-bridge"
        )
        self.path = path
        self.length = length


def check_socket_path(path: Path) -> None:
    """Refuse a Unix socket path that bind(2) and connect(2) would reject on macOS."""
    length = len(os.fsencode(path))
    if length >= SUN_PATH_MAX:
        raise SocketPathTooLong(path, length)


# --- the rest of the seam: the path limit on the control socket, processes, TCP owners --


def _short_enough(address: Path) -> None:
    # Python's own refusal is "AF_UNIX path too long", without the path or a way out.
    try:
        check_socket_path(address)
    except SocketPathTooLong as exc:
        raise UnsafeRuntimeDir(str(exc)) from None


def control_exists(address: Path) -> bool:
    """Say whether something is at ``address``; a path macOS cannot bind is refused by name."""
    _short_enough(address)
    return posix.control_exists(address)


def connect(address: Path, timeout: float) -> socket.socket:
    """A blocking, connected channel to the control socket, its path checked first."""
    _short_enough(address)
    return posix.connect(address, timeout)


def listen_control(address: Path) -> socket.socket:
    """Bind the control socket 0600, refusing a path sockaddr_un cannot hold."""
    _short_enough(address)
    return posix.listen_control(address)


def peer_identity(transport: Any) -> int | None:
    """Return the uid at the other end of a control connection, as ``bridge.platform`` names it."""
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        return peer_uid(sock)
    except (OSError, PeerCredentialsError):
        return None  # a peer that cannot be told is not this user (same_user says no)


def tcp_peer_owner(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """None: macOS shows no user the owners of other users' sockets, so it cannot be told.

    Linux reads them in sock_diag or /proc/net/tcp; here only root (lsof) or the owner
    (libproc, process by process) sees a socket's process. The daemon then serves the
    browser's request as before and says once that it cannot tell users apart.
    """
    return None


def tcp_listener_owner(port: int) -> int | None:
    """None: whose socket listens on a port is not for this user to see (as above)."""
    return None


#: <sys/syslimits.h>: the soft limit asked for when the hard one is unlimited (as it is for
#: a login session's processes). macOS releases before 10.x refused more with EINVAL;
#: xnu now caps the request at kern.maxfilesperproc, so this asks for what it grants.
OPEN_MAX = 10240


def harden_process(log: logging.Logger) -> None:
    """Files private to the user, no core dump, as many open files as macOS grants."""
    posix.harden_process(log, open_files_ceiling=OPEN_MAX)


def process_exited(pid: int) -> bool:
    """Say whether the process is gone (a zombie nobody reaped yet counts as gone)."""
    # No /proc: signal 0 asks whether the pid is taken, which a zombie still is.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # there, and another user's: a pid reused since
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    # ps reads the process table (sysctl KERN_PROC) and says Z for a zombie. A fork on
    # each call while the process lives: only `stop`'s wait asks, a few times a second.
    import subprocess

    try:
        state = subprocess.run(
            ["/bin/ps", "-o", "stat=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return state == "" or state.startswith("Z")


#: Set by the LaunchAgent's plist when launchd holds sockets for the daemon.
LAUNCHD_SOCKETS_VARIABLE = "OAUTH_BRIDGE_LAUNCHD_SOCKETS"


def service_sockets(
    environ: MutableMapping[str, str] | None = None,
) -> dict[str, list[socket.socket]] | None:
    """The listening sockets launchd holds for the LaunchAgent, by its ``Sockets`` names.

    None unless the plist says launchd holds some (``LAUNCHD_SOCKETS_VARIABLE``), or
    when launchd did not start this process. The names are the plist's
    (``bridge.service.launchd``), the same the systemd units give their fds.
    """
    env = os.environ if environ is None else environ
    # Popped, as LISTEN_FDS is: a child (a browser the daemon opens) is not launchd's job.
    if env.pop(LAUNCHD_SOCKETS_VARIABLE, None) != "1":
        return None
    return launchd_sockets(("http", "control"))
