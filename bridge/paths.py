"""Where oauth-bridge keeps its files: every platformdirs look-up is here."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from bridge.errors import UnsafeRuntimeDir, UsageError

# The dir checks are the system's (a uid and a mode on Linux, an ACL on Windows).
from bridge.platform import check_parents as check_parents
from bridge.platform import check_private_dir as check_private_dir
from bridge.platform import control_address

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
        """The control channel: ``control.sock`` in the runtime dir, or a named pipe."""
        return control_address(self.runtime_dir)

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
