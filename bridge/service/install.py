"""Install oauth-bridge as a systemd user service: `oauth-bridge install-service`."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bridge.errors import ExitCode
from bridge.service.files import write_atomically

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "configured_port",
    "logins_under_way",
    "print_credentials_hint",
    "run",
    "state_dir",
    "unit_dir",
    "user_namespace_problem",
]

SERVICE = "oauth-bridge.service"
SOCKETS = ("oauth-bridge.socket", "oauth-bridge-control.socket")
SANDBOX = "oauth-bridge.service.d/sandbox.conf"
ALL_UNITS = (SERVICE, *SOCKETS, SANDBOX)

# What `systemctl enable` links, per the [Install] sections of our units.
_ENABLE_LINKS = {
    SERVICE: "default.target.wants",
    SOCKETS[0]: "sockets.target.wants",
    SOCKETS[1]: "sockets.target.wants",
}

_PLACEHOLDER = "@EXECSTART@"
DEFAULT_PORT = 8765  # the port the unit files in systemd/ are written with
PORT_ENV = "OAUTH_BRIDGE_PORT"
# The socket unit's loopback listeners, whose port is rendered from the configuration.
_LISTEN_STREAM = re.compile(r"^(ListenStream=(?:127\.0\.0\.1|\[::1\])):\d+$", re.MULTILINE)
# Where a port from the environment is handed on to the service (the user manager's
# environment is not the installing shell's).
_STATE_DIR_LINE = "Environment=OAUTH_BRIDGE_STATE_DIR=%h/.local/state/oauth-bridge\n"
# The sandbox drop-in's one writable path: the state dir.
_READ_WRITE_LINE = "ReadWritePaths=%h/.local/state/oauth-bridge\n"
STATE_ENV = "OAUTH_BRIDGE_STATE_DIR"
CONFIG_ENV = "OAUTH_BRIDGE_CONFIG"
_MARKER = "# Written by `oauth-bridge install-service` (sha256 "
_MARKER_NOTE = "# It refuses to overwrite or remove this file once edited, unless given --force.\n"


def unit_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the systemd user unit directory to install into."""
    env = os.environ if environ is None else environ
    override = env.get("OAUTH_BRIDGE_UNIT_DIR")
    if override:
        return Path(override)
    config_home = env.get("XDG_CONFIG_HOME", "")
    # The XDG spec says to ignore a relative value, and systemd does so too.
    base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
    return base / "systemd" / "user"


def default_state_dir() -> Path:
    """The state dir the unit files are written with: %h/.local/state/oauth-bridge."""
    return Path.home() / ".local" / "state" / "oauth-bridge"


@dataclass(frozen=True)
class StateDir:
    """The state dir the tools use here, which the unit pins, and where that was said."""

    path: Path
    origin: str

    @property
    def is_default(self) -> bool:
        return self.path == default_state_dir()


class DirProblem(Exception):
    """The state dir or config file named in the environment cannot go into a unit."""


def state_dir(environ: Mapping[str, str] | None = None) -> StateDir:
    """Resolve the state dir as the tools do: OAUTH_BRIDGE_STATE_DIR, else XDG_STATE_HOME's.

    A systemd user service sees neither variable of the installing shell: the unit pins
    the result, so that the service keeps its login store where the tools look for it.
    """
    env = os.environ if environ is None else environ
    named = env.get(STATE_ENV, "")
    if named:
        return StateDir(_absolute(named, f"environment variable {STATE_ENV}"), STATE_ENV)
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg.strip():
        # platformdirs' rule, which the tools follow (bridge.paths).
        return StateDir(
            _absolute(xdg, "environment variable XDG_STATE_HOME") / "oauth-bridge",
            "XDG_STATE_HOME",
        )
    return StateDir(default_state_dir(), "the default")


def tools_config_file(environ: Mapping[str, str] | None = None) -> Path:
    """The config file the tools (and so `serve`) read: OAUTH_BRIDGE_CONFIG, else the default.

    Not bridge.paths.default_paths: that resolves the runtime dir too, which a shell
    without XDG_RUNTIME_DIR (su, sudo: where install-service is told so) cannot.
    """
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    import platformdirs

    from bridge.paths import APP_NAME

    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def config_override(environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file OAUTH_BRIDGE_CONFIG names, which the unit must name too, or None."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_ENV, "")
    return _absolute(named, f"environment variable {CONFIG_ENV}") if named else None


def _absolute(value: str, origin: str) -> Path:
    if not os.path.isabs(value):
        raise DirProblem(
            f"{origin} is {value!r}, a relative path: a service has its own working "
            "directory, so give an absolute one"
        )
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise DirProblem(f"{origin} holds a control character")
    return Path(os.path.normpath(value))


def _unit_value(value: str) -> str:
    """Quote a value for a unit file: systemd expands % itself, and splits at blanks."""
    value = value.replace("%", "%%")
    if any(c in value for c in " \t\"\\'"):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value


# --- user namespaces --------------------------------------------------------

# Run in a fresh interpreter: unshare(CLONE_NEWUSER) fails in a threaded
# process, and forking this one could copy a running event loop or threads.
_USERNS_PROBE = """
import ctypes, os, sys
CLONE_NEWUSER = 0x10000000
if hasattr(os, "unshare"):
    os.unshare(CLONE_NEWUSER)
else:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        err = ctypes.get_errno()
        sys.exit(os.strerror(err))
"""


def _read_sysctl(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def user_namespace_problem(proc_sys: Path = Path("/proc/sys"), *, probe: bool = True) -> str | None:
    """Return why unprivileged user namespaces cannot be used here, or None if they can."""
    if _read_sysctl(proc_sys / "kernel" / "unprivileged_userns_clone") == "0":
        return "the kernel forbids them (sysctl kernel.unprivileged_userns_clone = 0)"
    if _read_sysctl(proc_sys / "user" / "max_user_namespaces") == "0":
        return "the kernel allows none (sysctl user.max_user_namespaces = 0)"
    if _read_sysctl(proc_sys / "kernel" / "apparmor_restrict_unprivileged_userns") == "1":
        # Ubuntu 24.04's default: the user manager runs unconfined, so the
        # service's namespace set-up is denied even though a probe from a
        # confined shell might pass.
        return (
            "AppArmor restricts them "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns = 1, Ubuntu's default)"
        )
    if not probe:
        return None
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _USERNS_PROBE],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        return f"creating one failed here ({reason[0]})"
    return None


# --- unit files -------------------------------------------------------------


def _templates() -> Traversable:
    from importlib import resources

    try:
        return resources.files("bridge.units")
    except ModuleNotFoundError:
        # A source checkout: pyproject maps systemd/ to bridge.units only when
        # the package is built.
        return Path(__file__).resolve().parents[2] / "systemd"


def exec_start() -> str:
    """Return the command line that runs this installation's oauth-bridge."""
    # -P: never import a `bridge` from the working directory (the home directory here).
    command = shlex.quote(sys.executable) + " -P -m bridge"
    # systemd expands specifiers (%) and variables ($) in ExecStart= itself.
    return command.replace("%", "%%").replace("$", "$$")


def _body_hash(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Port:
    """The TCP port the daemon is configured to listen on, and where that was said."""

    number: int = DEFAULT_PORT
    origin: str = "the default"

    @property
    def from_environment(self) -> bool:
        return self.origin == f"environment variable {PORT_ENV}"


class PortProblem(Exception):
    """The configured port cannot be written into a unit; the message says why."""


def configured_port(environ: Mapping[str, str] | None = None) -> Port:
    """Resolve the port as `serve` will: OAUTH_BRIDGE_PORT, else the config file's `port`."""
    import tomllib

    env = os.environ if environ is None else environ
    if env.get(PORT_ENV, "") != "":
        return _check_port(env[PORT_ENV], f"environment variable {PORT_ENV}")
    config_file = tools_config_file(env)
    try:
        with config_file.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        return Port()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PortProblem(f"cannot read the port from {config_file}: {exc}") from None
    if "port" not in values:
        return Port()
    return _check_port(values["port"], f"{config_file}: key 'port'")


def _check_port(value: object, origin: str) -> Port:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else -1
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise PortProblem(f"{origin}: {value!r} is not a TCP port (1 to 65535)")
    return Port(number, origin)


def render(
    name: str,
    port: Port | None = None,
    state: StateDir | None = None,
    config: Path | None = None,
) -> str:
    """Return the unit file `name` as this command writes it.

    For the configured port, the state dir the tools use, and the config file the
    environment names (``config``; None: the default one, which the service finds itself).
    """
    port = port or Port()
    body = _templates().joinpath(name).read_text(encoding="utf-8")
    body = body.replace(_PLACEHOLDER, exec_start())
    if name in SOCKETS:
        body = _LISTEN_STREAM.sub(rf"\g<1>:{port.number}", body)
    if name == SERVICE:
        extra = ""
        if port.from_environment:
            extra += (
                f"# The port given to install-service in {PORT_ENV}.\n"
                f"Environment={PORT_ENV}={port.number}\n"
            )
        if config is not None:
            extra += (
                f"# The config file given to install-service in {CONFIG_ENV}.\n"
                f"Environment={_unit_value(f'{CONFIG_ENV}={config}')}\n"
            )
        line = _STATE_DIR_LINE
        if state is not None and not state.is_default:
            line = (
                f"# The state dir the tools use ({state.origin} at install-service).\n"
                f"Environment={_unit_value(f'{STATE_ENV}={state.path}')}\n"
            )
        body = body.replace(_STATE_DIR_LINE, line + extra)
    if name == SANDBOX and state is not None and not state.is_default:
        body = body.replace(_READ_WRITE_LINE, f"ReadWritePaths={_unit_value(str(state.path))}\n")
    return f"{_MARKER}{_body_hash(body)})\n{_MARKER_NOTE}{body}"


def _is_ours_and_unedited(text: str) -> bool:
    first, _, rest = text.partition("\n")
    if not (first.startswith(_MARKER) and first.endswith(")")):
        return False
    recorded = first[len(_MARKER) : -1]
    body = rest.removeprefix(_MARKER_NOTE)
    return body != rest and recorded == _body_hash(body)


@dataclass(frozen=True)
class _Change:
    path: Path
    content: str
    current: str | None

    @property
    def unchanged(self) -> bool:
        return self.current == self.content

    @property
    def blocked(self) -> bool:
        """Tell whether writing would destroy someone's edits."""
        return (
            self.current is not None
            and not self.unchanged
            and not _is_ours_and_unedited(self.current)
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _links_to(link: Path, unit: Path) -> bool:
    """Tell whether `link` is a `systemctl enable` symlink to `unit`."""
    if not link.is_symlink():
        return False
    return Path(os.path.normpath(link.parent / os.readlink(link))) == unit


# --- systemctl --------------------------------------------------------------


def _systemctl(*arguments: str) -> list[str]:
    return ["systemctl", "--user", *arguments]


# A running daemon keeps the units it was started with until it restarts.
_RESTART = _systemctl("try-restart", SERVICE)


def _format(command: Sequence[str]) -> str:
    return shlex.join(command)


# What systemctl --user says without a user manager to talk to (su, sudo, cron, a
# container): "Failed to connect to bus: No medium found", or, from systemd 254 on,
# "Failed to connect to user scope bus via local transport: ...".
_NO_USER_BUS = re.compile(r"Failed to connect to (?:user scope )?bus")

NO_USER_BUS = (
    "There is no user bus here, so systemctl --user cannot reach your user manager: run "
    "install-service from a login session of your own (a desktop or SSH login, not su or "
    "sudo), or run 'loginctl enable-linger $USER' and then run it again with "
    "XDG_RUNTIME_DIR=/run/user/$(id -u) set."
)


def _run_commands(commands: Sequence[Sequence[str]], out: TextIO, err: TextIO) -> ExitCode:
    """Run each systemctl command; a failure is PROBLEMS, install-service's "could not finish"."""
    if shutil.which("systemctl") is None:
        print("systemctl is not on PATH; run these yourself:", file=err)
        for command in commands:
            print(f"  {_format(command)}", file=err)
        return ExitCode.PROBLEMS
    for command in commands:
        print(f"$ {_format(command)}", file=out, flush=True)
        result = subprocess.run(list(command), check=False, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0 and _NO_USER_BUS.search(result.stderr or ""):
            print(NO_USER_BUS, file=err)
            return ExitCode.PROBLEMS
        if result.stderr:
            err.write(result.stderr)  # "Created symlink ...", or why it failed
        if result.returncode != 0:
            print(f"failed (exit {result.returncode}): {_format(command)}", file=err)
            return ExitCode.PROBLEMS
    return ExitCode.OK


def _print_linger_hint(out: TextIO) -> None:
    print("To keep it running without a login session (over SSH, after logout):", file=out)
    print("  loginctl enable-linger $USER", file=out)


# The dirs PrivateTmp= replaces with empty ones; nothing is written there.
_PRIVATE_TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))  # noqa: S108 - compared, not used

_SANDBOX_REFUSAL = """\
Refusing --sandbox: unprivileged user namespaces are unavailable: {problem}.
In a user unit, systemd builds the sandbox (ProtectSystem=, PrivateTmp=, ...)
inside a user namespace (systemd >= 254 implies PrivateUsers= for it), so with
the drop-in the service would fail to start. Install without --sandbox: the
main unit's hardening (seccomp filters, NoNewPrivileges=) needs no namespaces."""


# --- the command ------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Install (or remove) the unit files and return the exit code."""
    out, err = sys.stdout, sys.stderr
    if args.uninstall:
        return _uninstall(args, out, err)

    names = [SERVICE]
    if args.socket:
        names.extend(SOCKETS)
    if args.sandbox:
        names.append(SANDBOX)
        problem = user_namespace_problem()
        if problem is not None:
            print(_SANDBOX_REFUSAL.format(problem=problem), file=err)
            return ExitCode.USAGE
        if any(Path(sys.executable).is_relative_to(hidden) for hidden in _PRIVATE_TMP_DIRS):
            print(
                f"warning: {sys.executable} is under a temporary directory, which the\n"
                "sandbox's PrivateTmp= hides from the service: it will not start from there.",
                file=err,
            )
    if "\n" in sys.executable:
        print("Refusing: the interpreter's path contains a newline.", file=err)
        return ExitCode.USAGE

    try:
        port = configured_port()
    except PortProblem as exc:
        print(f"Refusing: {exc}.", file=err)
        return ExitCode.USAGE
    if args.socket and port.number == 0:
        print(
            f'Refusing --socket: the port is 0 ({port.origin}), "any free port", but a\n'
            "socket unit listens on one fixed port, the one providers redirect to.\n"
            f"Configure a port (`port = {DEFAULT_PORT}` in the config file), or install\n"
            "without --socket.",
            file=err,
        )
        return ExitCode.USAGE

    try:
        state, config = state_dir(), config_override()
    except DirProblem as exc:
        print(f"Refusing: {exc}.", file=err)
        return ExitCode.USAGE

    directory = unit_dir()
    changes = [
        _Change(directory / name, render(name, port, state, config), _read(directory / name))
        for name in names
    ]

    if args.dry_run:
        for change in changes:
            print(f"# {change.path}", file=out)
            print(change.content, file=out)
        return ExitCode.OK

    blocked = [change for change in changes if change.blocked]
    if blocked and not args.force:
        for change in blocked:
            print(f"Refusing to overwrite {change.path}: it differs from what", file=err)
            print("this command would write (edited, or not written by it).", file=err)
        print("Compare with --dry-run, then pass --force to replace it.", file=err)
        return ExitCode.USAGE

    for change in changes:
        if change.unchanged:
            print(f"unchanged: {change.path}", file=out)
        else:
            write_atomically(change.path, change.content.encode())
            print(f"wrote:     {change.path}", file=out)
    if args.sandbox:
        # The drop-in's ReadWritePaths= must exist before the service starts.
        state.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not state.is_default:
        print(f"state dir: {state.path} (from {state.origin}, as the tools use it)", file=out)
    if config is not None:
        print(f"config:    {config} (from {CONFIG_ENV})", file=out)
    if args.socket and port.number != DEFAULT_PORT:
        print(
            f"listening on 127.0.0.1:{port.number} and [::1]:{port.number} ({port.origin})",
            file=out,
        )

    # Enabling the sockets is enough: the first connection starts the service.
    units = SOCKETS if args.socket else (SERVICE,)
    commands = [_systemctl("daemon-reload"), _systemctl("enable", "--now", *units)]
    changed = not all(change.unchanged for change in changes)
    if args.enable:
        status = _run_commands(commands, out, err)
        if status == ExitCode.OK and changed:
            status = _restart_when_safe(out, err)
    else:
        print("Now run:", file=out)
        for command in commands:
            print(f"  {_format(command)}", file=out)
        if changed and any(change.current is not None for change in changes):
            print("and, if oauth-bridge.service is running, once no login is under way:", file=out)
            print(f"  {_format(_RESTART)}", file=out)
        status = ExitCode.OK
    _print_linger_hint(out)
    print_credentials_hint(out)
    return status


@dataclass(frozen=True)
class Credential:
    """One credential of the daemon: the shell's variable, and the config key a unit needs."""

    variable: str
    key: str
    line: str  # what to write in the config file
    needs_a_file: bool


CREDENTIALS = (
    Credential("LANGSMITH_API_KEY", "api_key_file", 'api_key_file = "api-key"', True),
    Credential(
        "OAUTH_BRIDGE_BEARER_TOKEN", "bearer_token_file", 'bearer_token_file = "bearer-token"', True
    ),
    Credential("LANGSMITH_WORKSPACE_ID", "workspace_id", "workspace_id = {value}", False),
)


def lacking_credentials(
    values: Mapping[str, object], environ: Mapping[str, str]
) -> list[tuple[Credential, str]]:
    """Each credential the service will lack, with the line that gives it.

    The service sees the config file and not the shell: a credential the shell has and
    the file does not is lost; and without an API key or a bearer token in the file,
    LangSmith refuses every login, whatever the shell has.
    """
    import json

    api_key, bearer, _ = CREDENTIALS
    has_one = any(values.get(c.key) for c in (api_key, bearer))
    lacking = []
    for credential in CREDENTIALS:
        if values.get(credential.key):
            continue
        in_shell = bool(environ.get(credential.variable))
        if not in_shell and not (credential is api_key and not has_one):
            continue
        # A workspace id is no secret: its line can carry the shell's own. A key's or a
        # token's value is never read here.
        value = "<your workspace id>"
        if not credential.needs_a_file:
            value = environ.get(credential.variable) or value
        lacking.append((credential, credential.line.format(value=json.dumps(value))))
    return lacking


def print_credentials_hint(out: TextIO, environ: Mapping[str, str] | None = None) -> None:
    """Name each credential the service will lack, and the config line that gives it."""
    import tomllib

    env = os.environ if environ is None else environ
    config_file = tools_config_file(env)
    try:
        with config_file.open("rb") as handle:
            values: dict[str, object] = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        values = {}
    lacking = lacking_credentials(values, env)
    if not lacking:
        return
    print(
        "A service does not see your shell's environment: it reads its credentials from "
        f"{config_file}, which lacks:",
        file=out,
    )
    for credential, line in lacking:
        how = "put it in a file (chmod 600) and add" if credential.needs_a_file else "add"
        print(f"  {credential.variable}: {how}", file=out)
        print(f"    {line}", file=out)
    if any(credential.needs_a_file for credential, _ in lacking):
        print("  (a file's path may be relative to the config file)", file=out)


def logins_under_way(control_socket: Path | None = None) -> int | None:
    """Ask the running daemon how many logins are pending or forwarding (None: no answer).

    ``control_socket`` is the daemon's; None: the systemd unit's.
    """
    from bridge.client.transport import ControlClient
    from bridge.errors import BridgeError

    if control_socket is None:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if not os.path.isabs(runtime):
            return None
        # The unit pins OAUTH_BRIDGE_RUNTIME_DIR=%t/oauth-bridge: this is its control socket.
        control_socket = Path(runtime) / "oauth-bridge" / "control.sock"
    client = ControlClient(control_socket)
    try:
        answer = client.request("GET", "/v1/status", timeout=5.0)
    except BridgeError:
        return None
    body = answer.body
    if answer.status != 200 or not isinstance(body, dict):
        return None
    pending = body.get("pending")
    recent = body.get("recent_logins")
    forwarding = sum(
        1
        for login in (recent if isinstance(recent, list) else [])
        if isinstance(login, dict) and login.get("status") == "forwarding"
    )
    return pending + forwarding if isinstance(pending, int) else None


def _restart_when_safe(out: TextIO, err: TextIO) -> ExitCode:
    """Restart a running daemon onto the new units, unless a login is under way."""
    active = subprocess.run(
        _systemctl("is-active", "--quiet", SERVICE), check=False, capture_output=True
    )
    if active.returncode != 0:
        return ExitCode.OK  # not running: the next start reads the new units
    under_way = logins_under_way()
    if under_way == 0:
        return _run_commands([_RESTART], out, err)
    why = (
        f"{under_way} login(s) under way"
        if under_way is not None
        else "its control socket did not say whether a login is under way"
    )
    print(
        f"{SERVICE} is running with the units it started with ({why}), and was left\n"
        "running. To run the new units, once no login is under way:\n"
        f"  {_format(_RESTART)}",
        file=err,
    )
    return ExitCode.OK


def _uninstall(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    directory = unit_dir()
    present = [
        (directory / name, text)
        for name in ALL_UNITS
        if (text := _read(directory / name)) is not None
    ]
    blocked = [path for path, text in present if not _is_ours_and_unedited(text)]
    if blocked and not args.force:
        for path in blocked:
            print(f"Refusing to remove {path}: it was edited, or not written by", file=err)
            print("`oauth-bridge install-service`. Pass --force to remove it anyway.", file=err)
        return ExitCode.USAGE

    links = [
        link
        for name, target in _ENABLE_LINKS.items()
        if _links_to(link := directory / target / name, directory / name)
    ]
    if args.dry_run:
        for path in [*(path for path, _ in present), *links]:
            print(f"would remove: {path}", file=out)
        return ExitCode.OK

    units = [*SOCKETS, SERVICE]
    # A unit that failed (a start limit hit, a watchdog kill) would otherwise stay
    # listed as not-found/failed after its file is gone.
    reset = _systemctl("reset-failed", *units)
    status = ExitCode.OK
    if args.enable:
        # Disable while the unit files still exist: systemctl reads [Install].
        status = _run_commands([_systemctl("disable", "--now", *units)], out, err)
        if status == ExitCode.OK:
            _reset_failed(reset, out)
    for path in [*links, *(path for path, _ in present)]:
        path.unlink(missing_ok=True)
        print(f"removed: {path}", file=out)
    drop_in_dir = directory / f"{SERVICE}.d"
    if drop_in_dir.is_dir() and not any(drop_in_dir.iterdir()):
        drop_in_dir.rmdir()
    if not present and not links:
        print(f"nothing to remove in {directory}", file=out)

    stop = _systemctl("stop", *units)
    reload = _systemctl("daemon-reload")
    if args.enable:
        if status == ExitCode.OK:
            status = _run_commands([reload], out, err)
    else:
        print("Now run:", file=out)
        print(f"  {_format(stop)}", file=out)
        print(f"  {_format(reset)}", file=out)
        print(f"  {_format(reload)}", file=out)
    return status


def _reset_failed(command: Sequence[str], out: TextIO) -> None:
    """Forget the units' failed state while they are still loaded."""
    print(f"$ {_format(command)}", file=out, flush=True)
    # It fails only for a unit systemd never loaded, which has no state to forget.
    subprocess.run(list(command), check=False, capture_output=True)
