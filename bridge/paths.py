"""Where oauth-bridge keeps its files: every platformdirs look-up is here."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any, NamedTuple

from bridge.errors import UnsafeRuntimeDir, UsageError

APP_NAME = "oauth-bridge"


class Paths(NamedTuple):
    """The runtime dir (socket, daemon.json) and the state dir (login store, daemon log).

    A NamedTuple rather than a dataclass: every CLI call builds one, and dataclasses
    costs a tool's process 5 ms to import.
    """

    runtime_dir: Path
    state_dir: Path
    config_file: Path

    @property
    def daemon_json(self) -> Path:
        return self.runtime_dir / "daemon.json"

    @property
    def control_socket(self) -> Path:
        return self.runtime_dir / "control.sock"

    @property
    def lock_file(self) -> Path:
        return self.runtime_dir / "daemon.lock"

    @property
    def start_lock_file(self) -> Path:
        return self.runtime_dir / "start.lock"

    @property
    def store_lock_file(self) -> Path:
        return self.state_dir / "store.lock"

    @property
    def store_file(self) -> Path:
        return self.state_dir / "logins.sqlite3"

    @property
    def daemon_log(self) -> Path:
        return self.state_dir / "daemon.log"


def default_paths(environ: os._Environ[str] | dict[str, str] | None = None) -> Paths:
    """Resolve the runtime, state and config locations from the environment, then platformdirs."""
    env = os.environ if environ is None else environ
    runtime = env.get("OAUTH_BRIDGE_RUNTIME_DIR")
    state = env.get("OAUTH_BRIDGE_STATE_DIR")
    config = env.get("OAUTH_BRIDGE_CONFIG")
    if not (runtime and state and config):
        # Imported here: the CLI's hot path usually has all three from the environment
        # in tests, and platformdirs costs a few milliseconds to import.
        import platformdirs

        if not runtime:
            runtime = _runtime_dir(platformdirs)
        state = state or platformdirs.user_state_dir(APP_NAME)
        config = config or str(Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml")
    return Paths(runtime_dir=Path(runtime), state_dir=Path(state), config_file=Path(config))


def _runtime_dir(platformdirs: Any) -> str:
    """platformdirs' runtime dir, with one plain sentence instead of its warning."""
    import sys
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runtime = str(platformdirs.user_runtime_dir(APP_NAME))
        except OSError as exc:
            # Without a usable XDG_RUNTIME_DIR platformdirs falls back to runtime-<uid> in
            # the shared temp dir, a name anyone may take first; it refuses one that is
            # another user's (or a link) with a PermissionError that names it.
            problem = str(exc).removeprefix("runtime directory ").split("; set ", 1)[0]
            raise UnsafeRuntimeDir(
                "XDG_RUNTIME_DIR is not set or not usable, and the fallback runtime dir "
                f"in the temp dir cannot be used: {problem}; set XDG_RUNTIME_DIR or "
                "OAUTH_BRIDGE_RUNTIME_DIR to a directory of your own"
            ) from None
    if caught:
        # Cron, sudo -u, containers and some SSH sessions have no XDG_RUNTIME_DIR.
        print(
            f"oauth-bridge: XDG_RUNTIME_DIR is not set, so the control socket is in "
            f"{runtime} (set OAUTH_BRIDGE_RUNTIME_DIR to choose)",
            file=sys.stderr,
        )
    return runtime


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700 if missing, and refuse it if another user owns it or others can enter it."""
    # The parents first: a mkdir through another user's link would create the dir
    # wherever that user chose before the check below could refuse it.
    check_parents(path)
    # Mode at mkdir time, so there is no moment when the dir is open to others.
    try:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise UnsafeRuntimeDir(f"cannot create {path}: {exc.strerror}") from None
    check_private_dir(path)


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


def ensure_state_dir(path: Path) -> None:
    """Create the state dir 0700, or refuse it as the runtime dir is refused; say why."""
    check_parents(path)  # before the mkdir, which would follow another user's link
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot use the state dir {path}: {exc.strerror}; set OAUTH_BRIDGE_STATE_DIR "
            "to a directory of your own"
        ) from None
    # The store and the log live here: another user's directory, or one others may
    # write, would let them plant a symlink to a file of ours or read the store.
    check_private_dir(path, "OAUTH_BRIDGE_STATE_DIR")


def _unmapped_owner() -> set[int]:
    """Return the uid files of unmapped owners show as in a user namespace, if we are in one.

    Under systemd's PrivateUsers=yes (the sandbox drop-in) root's /run/user shows as
    owned by the overflow uid (65534). Such a parent is trusted as root's would be; it
    must still not be writable by others.
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


def read_daemon_json(path: Path) -> dict[str, object] | None:
    """Read daemon.json, or None when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_daemon_json(path: Path, info: dict[str, object]) -> None:
    """Write then rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    os.replace(tmp, path)
