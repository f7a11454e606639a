"""oauth-bridge as a launchd LaunchAgent (macOS), as a plan: the plist to write, the commands to run.

Nothing here touches the disk or runs a command; an executor does (``--dry-run``,
``--force``, ``--enable`` and the printing), as it does for the systemd units.
launchd holds the sockets, as systemd's socket units do: it listens on the loopback
port and the control socket from login on, and starts the daemon on the first
connection; the daemon takes them with ``bridge.platform.macos.launchd_sockets``,
by the names below.
"""

from __future__ import annotations

import plistlib
from dataclasses import dataclass
from pathlib import Path

from bridge.platform.macos import LAUNCHD_SOCKETS_VARIABLE, check_socket_path

__all__ = [
    "CONTROL_SOCKETS",
    "HTTP_SOCKETS",
    "LABEL",
    "Command",
    "LaunchAgentPlan",
    "PlannedFile",
    "install_plan",
    "launch_agent",
    "plist_path",
    "render_plist",
    "uninstall_plan",
]

#: The job's label, and the plist's name in ~/Library/LaunchAgents (as the systemd
#: units are named oauth-bridge.*).
LABEL = "oauth-bridge"
#: The plist's ``Sockets`` names, which the daemon asks launch_activate_socket(3) for;
#: the same names the systemd units give their fds (FileDescriptorName=).
HTTP_SOCKETS = "http"
CONTROL_SOCKETS = "control"
# As the systemd unit: an idle daemon exits, and launchd, holding the sockets, starts
# it again on the next connection.
IDLE_EXIT_SECONDS = 300
# As the unit's TimeoutStopSec=: how long launchd waits after its SIGTERM before a
# SIGKILL, time for the forwards in flight to finish (launchd's own default is shorter).
EXIT_TIMEOUT_SECONDS = 30
# Property lists have no octal: 0o600 and 0o077 as the integers launchd reads.
_SOCKET_MODE = 0o600
_UMASK = 0o077


@dataclass(frozen=True)
class PlannedFile:
    """A file to write (atomically, with this mode)."""

    path: Path
    content: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Command:
    """A command to run, and whether its failure ends the plan (``check``)."""

    argv: tuple[str, ...]
    check: bool = True


@dataclass(frozen=True)
class LaunchAgentPlan:
    """What installing or removing the LaunchAgent takes, in this order: dirs, files, commands, removals."""

    directories: tuple[Path, ...]
    files: tuple[PlannedFile, ...]
    removals: tuple[Path, ...]
    commands: tuple[Command, ...]
    notes: tuple[str, ...]


def plist_path(home: Path, label: str = LABEL) -> Path:
    """Return where the LaunchAgent's plist goes: ~/Library/LaunchAgents/<label>.plist."""
    return home / "Library" / "LaunchAgents" / f"{label}.plist"


def _service_target(uid: int, label: str) -> str:
    return f"gui/{uid}/{label}"


def launch_agent(
    *,
    interpreter: str,
    port: int,
    runtime_dir: Path,
    log_file: Path,
    state_dir: Path | None = None,
    config_file: Path | None = None,
    label: str = LABEL,
    sockets: bool = True,
) -> dict[str, object]:
    """Return the LaunchAgent's property list, launchd holding the sockets unless ``sockets`` is false."""
    if not 0 <= port <= 65535 or (sockets and port == 0):
        raise ValueError(
            f"port {port}: launchd listens on one fixed port, the one providers redirect "
            "to (1 to 65535)"
        )
    control_socket = runtime_dir / "control.sock"
    check_socket_path(control_socket)

    # -P: never import a `bridge` from the working directory.
    arguments = [interpreter, "-P", "-m", "bridge", "serve"]
    # launchd names paths literally (no variables): the daemon and the tools must agree
    # on the runtime dir, so it is pinned to the one the installing shell resolved.
    environment = {"OAUTH_BRIDGE_RUNTIME_DIR": str(runtime_dir)}
    if state_dir is not None:
        environment["OAUTH_BRIDGE_STATE_DIR"] = str(state_dir)
    if config_file is not None:
        environment["OAUTH_BRIDGE_CONFIG"] = str(config_file)

    agent: dict[str, object] = {
        "Label": label,
        "EnvironmentVariables": environment,
        "StandardErrorPath": str(log_file),
        # Files the daemon creates (store, daemon.json) are private to the user.
        "Umask": _UMASK,
        # No core dump: it would hold the API key, codes and states.
        "SoftResourceLimits": {"Core": 0},
        "HardResourceLimits": {"Core": 0},
        "ExitTimeOut": EXIT_TIMEOUT_SECONDS,
    }
    if sockets:
        arguments += ["--idle-exit", str(IDLE_EXIT_SECONDS)]
        # Tells the daemon that launchd holds sockets for it: only then does it ask
        # launch_activate_socket, whose answer to a process it did not start is ESRCH
        # by its man page and untested beyond that.
        environment[LAUNCHD_SOCKETS_VARIABLE] = "1"
        service = str(port)
        agent["Sockets"] = {
            # Loopback only, both families, as the daemon binds them itself.
            HTTP_SOCKETS: [
                {
                    "SockNodeName": node,
                    "SockServiceName": service,
                    "SockFamily": family,
                    "SockType": "stream",
                }
                for node, family in (("127.0.0.1", "IPv4"), ("::1", "IPv6"))
            ],
            CONTROL_SOCKETS: {
                "SockPathName": str(control_socket),
                # Only the user may connect: the control API has no token of its own.
                "SockPathMode": _SOCKET_MODE,
                "SockType": "stream",
            },
        }
        # Started by the first connection to a socket, not at login; an idle or clean
        # exit stays down until the next one (launchd keeps listening meanwhile).
        agent["RunAtLoad"] = False
        agent["KeepAlive"] = False
    else:
        arguments += ["--port", str(port)]
        # Nobody holds the port for it: run from login, and again after a crash.
        agent["RunAtLoad"] = True
        agent["KeepAlive"] = {"SuccessfulExit": False}
    agent["ProgramArguments"] = arguments
    return agent


def render_plist(agent: dict[str, object]) -> bytes:
    """Return the property list as the XML launchd reads, keys sorted so the bytes are stable."""
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=True)


def install_plan(
    *,
    uid: int,
    home: Path,
    interpreter: str,
    port: int,
    runtime_dir: Path,
    log_file: Path,
    state_dir: Path | None = None,
    config_file: Path | None = None,
    label: str = LABEL,
    sockets: bool = True,
) -> LaunchAgentPlan:
    """Plan the LaunchAgent's install: its dirs, the plist, and ``launchctl bootstrap``."""
    agent = launch_agent(
        interpreter=interpreter,
        port=port,
        runtime_dir=runtime_dir,
        log_file=log_file,
        state_dir=state_dir,
        config_file=config_file,
        label=label,
        sockets=sockets,
    )
    path = plist_path(home, label)
    # launchd creates the control socket but not the dir it is in; the daemon refuses a
    # runtime or state dir open to others, so they are made 0700 before launchd runs.
    directories = [runtime_dir, log_file.parent]
    if state_dir is not None:
        directories.append(state_dir)
    notes = [
        f"An agent already loaded keeps its old plist: once no login is under way, run "
        f"`launchctl bootout {_service_target(uid, label)}` before bootstrapping again.",
        "A LaunchAgent does not see your shell's LANGSMITH_API_KEY: name a key file "
        "(chmod 600) as api_key_file in the config file.",
    ]
    return LaunchAgentPlan(
        directories=tuple(dict.fromkeys(directories)),
        files=(PlannedFile(path, render_plist(agent)),),
        removals=(),
        commands=(Command(("launchctl", "bootstrap", f"gui/{uid}", str(path))),),
        notes=tuple(notes),
    )


def uninstall_plan(*, uid: int, home: Path, label: str = LABEL) -> LaunchAgentPlan:
    """Plan the LaunchAgent's removal: ``launchctl bootout``, then the plist."""
    return LaunchAgentPlan(
        directories=(),
        files=(),
        removals=(plist_path(home, label),),
        # Fails when the agent is not loaded, which is what it would achieve anyway.
        commands=(Command(("launchctl", "bootout", _service_target(uid, label)), check=False),),
        notes=(),
    )
