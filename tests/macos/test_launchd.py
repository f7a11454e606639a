"""The LaunchAgent as a plan: its plist against the reviewed golden file, and its commands."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest

from bridge.platform.macos import SocketPathTooLong
from bridge.service import launchd

GOLDEN = Path(__file__).parent / "golden" / "oauth-bridge.plist"

HOME = Path("/Users/alice")
INTERPRETER = "/Users/alice/.local/pipx/venvs/oauth-bridge/bin/python"
RUNTIME = HOME / "Library/Caches/TemporaryItems/oauth-bridge"
STATE = HOME / "Library/Application Support/oauth-bridge"
LOG = HOME / "Library/Logs/oauth-bridge/launchd.log"
CONFIG = STATE / "config.toml"


def install(**overrides: object) -> launchd.LaunchAgentPlan:
    arguments: dict[str, object] = {
        "uid": 501,
        "home": HOME,
        "interpreter": INTERPRETER,
        "port": 8765,
        "runtime_dir": RUNTIME,
        "log_file": LOG,
        "state_dir": STATE,
        "config_file": CONFIG,
    }
    arguments.update(overrides)
    return launchd.install_plan(**arguments)  # type: ignore[arg-type]  # the test's own table


def agent(**overrides: object) -> dict[str, object]:
    plan = install(**overrides)
    parsed: dict[str, object] = plistlib.loads(plan.files[0].content)
    return parsed


def test_the_plist_is_the_reviewed_golden_file() -> None:
    (plist,) = install().files
    assert GOLDEN.read_bytes() == plist.content


def test_the_plist_goes_to_the_users_launch_agents() -> None:
    (plist,) = install().files
    assert (plist.path, plist.mode) == (HOME / "Library/LaunchAgents/oauth-bridge.plist", 0o644)


def test_the_plist_runs_this_interpreter_with_python_m_bridge_serve() -> None:
    assert agent()["ProgramArguments"] == [
        INTERPRETER,
        "-P",
        "-m",
        "bridge",
        "serve",
        "--idle-exit",
        "300",
    ]


def test_launchd_listens_on_both_loopbacks_at_the_port() -> None:
    sockets = agent(port=9000)["Sockets"]
    assert isinstance(sockets, dict)
    assert [
        (entry["SockNodeName"], entry["SockServiceName"], entry["SockType"])
        for entry in sockets["http"]
    ] == [("127.0.0.1", "9000", "stream"), ("::1", "9000", "stream")]


def test_the_control_socket_is_the_runtime_dirs_and_only_the_users() -> None:
    sockets = agent()["Sockets"]
    assert isinstance(sockets, dict)
    assert {
        "SockPathName": str(RUNTIME / "control.sock"),
        "SockPathMode": 384,
        "SockType": "stream",
    } == sockets["control"]


def test_the_environment_pins_the_dirs_and_the_config_and_says_launchd_holds_sockets() -> None:
    assert {
        "OAUTH_BRIDGE_RUNTIME_DIR": str(RUNTIME),
        "OAUTH_BRIDGE_STATE_DIR": str(STATE),
        "OAUTH_BRIDGE_CONFIG": str(CONFIG),
        "OAUTH_BRIDGE_LAUNCHD_SOCKETS": "1",
    } == agent()["EnvironmentVariables"]


def test_the_environment_names_only_the_runtime_dir_when_nothing_else_is_given() -> None:
    assert {"OAUTH_BRIDGE_RUNTIME_DIR": str(RUNTIME)} == agent(
        state_dir=None, config_file=None, sockets=False, port=9000
    )["EnvironmentVariables"]


def test_launchd_waits_as_long_as_systemd_for_the_forwards_in_flight() -> None:
    assert agent()["ExitTimeOut"] == 30  # the unit's TimeoutStopSec=30


def test_stderr_goes_to_the_log() -> None:
    assert str(LOG) == agent()["StandardErrorPath"]


def test_socket_activation_starts_on_the_first_connection_only() -> None:
    plist = agent()
    assert (plist["RunAtLoad"], plist["KeepAlive"]) == (False, False)


def test_without_sockets_it_runs_from_login_and_again_after_a_crash() -> None:
    plist = agent(sockets=False, port=9000)
    assert (
        plist["RunAtLoad"],
        plist["KeepAlive"],
        plist["ProgramArguments"],
        "Sockets" in plist,
    ) == (
        True,
        {"SuccessfulExit": False},
        [INTERPRETER, "-P", "-m", "bridge", "serve", "--port", "9000"],
        False,
    )


def test_the_install_command_bootstraps_the_plist_into_the_gui_domain() -> None:
    assert (
        launchd.Command(
            (
                "launchctl",
                "bootstrap",
                "gui/501",
                "/Users/alice/Library/LaunchAgents/oauth-bridge.plist",
            )
        ),
    ) == install().commands


def test_the_install_creates_the_dirs_launchd_does_not() -> None:
    assert (RUNTIME, LOG.parent, STATE) == install().directories


def test_the_uninstall_boots_the_agent_out_then_removes_the_plist() -> None:
    plan = launchd.uninstall_plan(uid=501, home=HOME)
    assert (
        (launchd.Command(("launchctl", "bootout", "gui/501/oauth-bridge"), check=False),),
        (HOME / "Library/LaunchAgents/oauth-bridge.plist",),
        (),
    ) == (plan.commands, plan.removals, plan.files)


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_a_port_launchd_cannot_hold_is_refused(port: int) -> None:
    with pytest.raises(ValueError, match=f"port {port}"):
        install(port=port)


def test_a_control_socket_path_macos_cannot_bind_is_refused() -> None:
    with pytest.raises(SocketPathTooLong):
        install(runtime_dir=Path("/Users/alice/" + "x" * 100))


def test_nothing_is_executed_or_written(tmp_path: Path) -> None:
    install(home=tmp_path, runtime_dir=tmp_path / "run", log_file=tmp_path / "log" / "l.log")
    assert list(tmp_path.iterdir()) == []
