"""``oauth-bridge install-service`` as on macOS: the LaunchAgent written, loaded, replaced, removed.

The CLI runs as darwin (tests/macos/as_macos) in a home of the test's own, and
``launchctl`` is a script on PATH that keeps launchd's one fact that matters here
(whether the agent is loaded) in a file, and logs each call.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.paths import Paths
from tests.conftest import REPO, start_process, wait_ready
from tests.control_plane_double import API_KEY, ControlPlaneDouble
from tests.macos.conftest import as_macos

# After a bootout, launchd refuses to bootstrap the label again for a while: with
# $LAUNCHCTL_BUSY naming a file that holds a count, that many bootstraps fail with 5.
LAUNCHCTL = """#!/bin/sh
echo "$*" >> "$LAUNCHCTL_LOG"
case "$1" in
  print) [ -e "$LAUNCHCTL_LOADED" ] && exit 0; echo "Could not find service" >&2; exit 113 ;;
  bootstrap)
    if [ -n "$LAUNCHCTL_BUSY" ] && [ -s "$LAUNCHCTL_BUSY" ]; then
      left=$(cat "$LAUNCHCTL_BUSY")
      if [ "$left" -gt 0 ]; then
        echo $((left - 1)) > "$LAUNCHCTL_BUSY"
        echo "Bootstrap failed: 5: Input/output error" >&2
        exit 5
      fi
    fi
    touch "$LAUNCHCTL_LOADED" ;;
  bootout)
    [ -e "$LAUNCHCTL_LOADED" ] || { echo "Boot-out failed: 3: No such process" >&2; exit 3; }
    rm -f "$LAUNCHCTL_LOADED" ;;
esac
"""


class Mac:
    """A home with a launchctl, and install-service run as macOS in it."""

    def __init__(self, home: Path, stub: Path) -> None:
        self.home = home
        bin_dir = home / "bin"
        bin_dir.mkdir()
        launchctl = bin_dir / "launchctl"
        launchctl.write_text(LAUNCHCTL, encoding="utf-8")
        launchctl.chmod(0o755)
        self.log = home / "launchctl.log"
        self.loaded = home / "loaded"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OAUTH_BRIDGE_", "LANGSMITH_", "XDG_"))
        }
        self.env = as_macos(
            {
                **base,
                "HOME": str(home),
                "PATH": f"{bin_dir}{os.pathsep}{base.get('PATH', '')}",
                "OAUTH_BRIDGE_PORT": "9876",
                "LAUNCHCTL_LOG": str(self.log),
                "LAUNCHCTL_LOADED": str(self.loaded),
            },
            stub,
        )
        self.plist = home / "Library" / "LaunchAgents" / "oauth-bridge.plist"

    def install_service(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-P", "-m", "bridge", "install-service", *args],
            env={**self.env, **extra},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def agent(self) -> dict[str, object]:
        parsed: dict[str, object] = plistlib.loads(self.plist.read_bytes())
        return parsed


@pytest.fixture
def mac(mac_home: Path, launch_stub: Path) -> Mac:
    return Mac(mac_home, launch_stub)


def test_socket_enable_writes_the_agent_and_bootstraps_it(mac: Mac) -> None:
    result = mac.install_service("--socket", "--enable")

    assert result.returncode == 0, result.stderr
    uid = os.getuid()
    assert mac.calls() == [f"print gui/{uid}/oauth-bridge", f"bootstrap gui/{uid} {mac.plist}"]
    agent = mac.agent()
    assert agent["ProgramArguments"] == [
        sys.executable, "-P", "-m", "bridge", "serve", "--idle-exit", "300",
    ]  # fmt: skip
    sockets = agent["Sockets"]
    assert isinstance(sockets, dict)
    assert {s["SockServiceName"] for s in sockets["http"]} == {"9876"}  # the configured port
    runtime = mac.home / "Library" / "Caches" / "TemporaryItems" / "oauth-bridge"
    assert sockets["control"]["SockPathName"] == str(runtime / "control.sock")
    environment = agent["EnvironmentVariables"]
    assert isinstance(environment, dict)
    # The dirs a tool resolves on this Mac (platformdirs'), pinned for launchd.
    assert environment["OAUTH_BRIDGE_RUNTIME_DIR"] == str(runtime)
    assert environment["OAUTH_BRIDGE_STATE_DIR"] == str(
        mac.home / "Library" / "Application Support" / "oauth-bridge"
    )
    # launchd makes the socket, not its dir: made 0700 before it runs.
    assert oct(runtime.stat().st_mode & 0o777) == "0o700"
    assert (mac.home / "Library" / "Logs" / "oauth-bridge").is_dir()
    assert "LANGSMITH_API_KEY" in result.stdout  # the agent won't see the shell's


def test_without_enable_it_writes_and_says_what_to_run(mac: Mac) -> None:
    result = mac.install_service()

    assert result.returncode == 0, result.stderr
    assert mac.calls() == []
    assert f"launchctl bootstrap gui/{os.getuid()} {mac.plist}" in result.stdout
    assert mac.agent()["RunAtLoad"] is True  # no sockets: it runs from login
    # ... and nobody holds the port while it is down, which no check can see on macOS.
    assert "with --socket, launchd holds it" in result.stdout
    assert mac.agent()["ProgramArguments"][-2:] == ["--port", "9876"]  # type: ignore[index]


def test_a_second_run_changes_nothing_and_restarts_nothing(mac: Mac) -> None:
    assert mac.install_service("--socket", "--enable").returncode == 0
    written = mac.plist.read_bytes()

    again = mac.install_service("--socket", "--enable")

    assert again.returncode == 0, again.stderr
    assert f"unchanged: {mac.plist}" in again.stdout
    assert "nothing to restart" in again.stdout
    assert mac.plist.read_bytes() == written
    assert [c.split()[0] for c in mac.calls()] == ["print", "bootstrap", "print"]


def test_a_loaded_agent_is_not_booted_out_when_its_daemon_cannot_say_it_is_idle(mac: Mac) -> None:
    assert mac.install_service("--socket", "--enable").returncode == 0

    moved = mac.install_service("--socket", "--enable", OAUTH_BRIDGE_PORT="9877")

    assert moved.returncode == 0, moved.stderr
    assert "left running" in moved.stderr
    assert "launchctl bootout" in moved.stderr  # what to run once no login is under way
    assert [c.split()[0] for c in mac.calls()] == ["print", "bootstrap", "print"]
    sockets = mac.agent()["Sockets"]
    assert isinstance(sockets, dict)
    assert {s["SockServiceName"] for s in sockets["http"]} == {"9877"}


def test_an_edited_plist_is_kept_unless_forced(mac: Mac) -> None:
    assert mac.install_service("--socket").returncode == 0
    edited = mac.plist.read_bytes().replace(b"<string>300</string>", b"<string>301</string>")
    assert edited != mac.plist.read_bytes()
    mac.plist.write_bytes(edited)

    refused = mac.install_service("--socket")
    kept_on_uninstall = mac.install_service("--uninstall")

    assert (refused.returncode, kept_on_uninstall.returncode) == (2, 2)
    assert "Refusing to overwrite" in refused.stderr
    assert "Refusing to remove" in kept_on_uninstall.stderr
    assert mac.plist.read_bytes() == edited
    forced = mac.install_service("--socket", "--force")
    assert forced.returncode == 0, forced.stderr
    assert mac.plist.read_bytes() != edited


def test_a_plist_someone_else_wrote_is_not_replaced(mac: Mac) -> None:
    mac.plist.parent.mkdir(parents=True)
    foreign = plistlib.dumps({"Label": "oauth-bridge", "ProgramArguments": ["/bin/true"]})
    mac.plist.write_bytes(foreign)

    result = mac.install_service()

    assert result.returncode == 2
    assert mac.plist.read_bytes() == foreign


def test_uninstall_enable_boots_the_agent_out_and_removes_the_plist(mac: Mac) -> None:
    assert mac.install_service("--socket", "--enable").returncode == 0

    result = mac.install_service("--uninstall", "--enable")

    assert result.returncode == 0, result.stderr
    assert mac.calls()[-1] == f"bootout gui/{os.getuid()}/oauth-bridge"
    assert not mac.plist.exists()
    assert not mac.loaded.exists()
    nothing = mac.install_service("--uninstall", "--enable")  # not loaded, no file: fine
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to remove" in nothing.stdout


def test_dry_run_prints_the_plist_and_writes_nothing(mac: Mac) -> None:
    result = mac.install_service("--socket", "--dry-run")

    assert result.returncode == 0, result.stderr
    header, _, document = result.stdout.partition("\n")
    assert header == f"# {mac.plist}"
    assert plistlib.loads(document.encode())["Label"] == "oauth-bridge"
    assert not mac.plist.exists()
    assert mac.calls() == []


@pytest.mark.parametrize(
    ("args", "extra", "says"),
    [
        (("--sandbox",), {}, "Refusing --sandbox"),
        (("--socket",), {"OAUTH_BRIDGE_PORT": "0"}, "fixed port"),
        ((), {"OAUTH_BRIDGE_STATE_DIR": "relative/state"}, "OAUTH_BRIDGE_STATE_DIR"),
    ],
)
def test_what_launchd_cannot_do_is_refused(
    mac: Mac, args: tuple[str, ...], extra: dict[str, str], says: str
) -> None:
    result = mac.install_service(*args, **extra)

    assert result.returncode == 2
    assert says in result.stderr
    assert not mac.plist.exists()


class IdleDaemon:
    """A daemon at the runtime dir the plist names, answering that no login is under way."""

    def __init__(self, mac: Mac, control_plane: ControlPlaneDouble) -> None:
        runtime = mac.home / "Library" / "Caches" / "TemporaryItems" / "oauth-bridge"
        paths = Paths(runtime, mac.home / "state", mac.home / "c.toml")
        env = {
            **mac.env,
            "OAUTH_BRIDGE_PORT": "0",
            "OAUTH_BRIDGE_STATE_DIR": str(paths.state_dir),
            "OAUTH_BRIDGE_CONFIG": str(paths.config_file),
            "OAUTH_BRIDGE_CONTROL_PLANE_URL": control_plane.url,
            "LANGSMITH_API_KEY": API_KEY,
        }
        self.daemon = start_process(paths, env)
        wait_ready(self.daemon)

    def __enter__(self) -> IdleDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.process.kill()
        self.daemon.process.wait(10)


def test_a_loaded_agent_is_moved_onto_a_changed_plist_when_its_daemon_is_idle(
    mac: Mac, control_plane: ControlPlaneDouble
) -> None:
    assert mac.install_service("--socket", "--enable").returncode == 0
    busy = mac.home / "busy"
    busy.write_text("2")  # launchd still tears the old job down: two refusals

    with IdleDaemon(mac, control_plane):
        moved = mac.install_service(
            "--socket", "--enable", OAUTH_BRIDGE_PORT="9877", LAUNCHCTL_BUSY=str(busy)
        )

    assert moved.returncode == 0, moved.stderr
    uid = os.getuid()
    bootstrap = f"bootstrap gui/{uid} {mac.plist}"
    assert mac.calls()[2:] == [
        f"print gui/{uid}/oauth-bridge",
        f"bootout gui/{uid}/oauth-bridge",
        f"print gui/{uid}/oauth-bridge",  # gone from launchd before it is loaded again
        bootstrap,
        bootstrap,
        bootstrap,
    ]
    assert mac.loaded.exists()


def test_a_restart_left_for_later_is_made_by_the_next_run(
    mac: Mac, control_plane: ControlPlaneDouble
) -> None:
    assert mac.install_service("--socket", "--enable").returncode == 0
    # The plist is rewritten while nobody can say the daemon is idle: left running.
    left = mac.install_service("--socket", "--enable", OAUTH_BRIDGE_PORT="9877")
    assert "left running" in left.stderr

    with IdleDaemon(mac, control_plane):
        again = mac.install_service("--socket", "--enable", OAUTH_BRIDGE_PORT="9877")

    assert again.returncode == 0, again.stderr
    assert f"unchanged: {mac.plist}" in again.stdout  # the file, not what launchd loaded
    assert "nothing to restart" not in again.stdout
    assert f"bootout gui/{os.getuid()}/oauth-bridge" in mac.calls()
