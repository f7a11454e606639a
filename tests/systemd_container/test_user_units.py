"""oauth-bridge's life as a systemd user service, under a real systemd 252 (Debian 12).

Each test runs as the guest's lingering test user, against a control-plane double that
runs in the guest too (its private network keeps the host's ports out of it).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from typing import Any

import pytest

from tests.conftest import REPO
from tests.systemd_container.guest import UNIT_DIR, Guest, poll

SERVICE = "oauth-bridge.service"
DROP_IN = f"{UNIT_DIR}/{SERVICE}.d/zz-test.conf"
LOOPBACKS = ["127.0.0.1", "[::1]"]
IDLE_EXIT = 2  # seconds, for the idle tests' drop-in


def install(guest: Guest, *flags: str, env: dict[str, str] | None = None) -> str:
    result = guest.oauth_bridge("install-service", *flags, env=env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def state_of(guest: Guest, unit: str = SERVICE) -> str:
    return guest.show(unit, "ActiveState")["ActiveState"]


def healthz(guest: Guest, host: str = "127.0.0.1", port: int = 8765) -> None:
    status, body = guest.get(f"http://{host}:{port}/healthz")
    assert status == 200, body


def new_state() -> str:
    return f"state-{uuid.uuid4().hex}"


def expect(guest: Guest, state: str, *flags: str) -> subprocess.Popen[str]:
    """`printf '%s\\n' STATE | oauth-bridge expect --provider github --state - ...`."""
    proc = guest.spawn("expect", "--provider", "github", "--state", "-", "--json", *flags)
    assert proc.stdin is not None
    proc.stdin.write(f"{state}\n")
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not flush it again
    return proc


def registered(guest: Guest, state: str) -> dict[str, Any]:
    """Register ``state`` (no waiting) and return the login object."""
    proc = expect(guest, state)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    login: dict[str, Any] = json.loads(out)
    return login


def start_login(guest: Guest) -> tuple[subprocess.Popen[str], str]:
    """`oauth-bridge login` in the background; the state the control plane made for it."""
    seen = {request["auth_id"] for request in guest.auth_requests()}
    proc = guest.spawn(
        "login", "--provider", "github", "--scope", "repo", "--no-open", "--json",
        "--timeout", "50", "--force-new",
        # The browser is the test, on this machine's loopback: not what a headless
        # container's auto rule would pick (LangSmith's own page).
        "--callback", "loopback",
    )  # fmt: skip

    def started() -> dict[str, str] | None:
        if proc.poll() is not None:
            raise AssertionError(f"login exited {proc.returncode}: {proc.communicate()}")
        fresh = [r for r in guest.auth_requests() if r["auth_id"] not in seen]
        return fresh[0] if fresh else None

    return proc, poll("the login's auth request at the control plane", started)["state"]


def browser_callback(guest: Guest, state: str, host: str = "127.0.0.1", port: int = 8765) -> None:
    status, page = guest.get(f"http://{host}:{port}/callback/github?code=code-1&state={state}")
    assert status == 200, page
    assert '<meta name="oauth-bridge-status" content="succeeded">' in page


def ended(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    login: dict[str, Any] = json.loads(out)
    return login


def write_drop_in(guest: Guest, text: str) -> None:
    guest.write(DROP_IN, text)
    guest.systemctl("daemon-reload")


def idle_exit_drop_in(guest: Guest) -> None:
    """The unit's own ExecStart=, with a short --idle-exit."""
    unit = guest.sh(f"cat {UNIT_DIR}/{SERVICE}").stdout
    exec_start = re.search(r"^ExecStart=(.*) --idle-exit 300$", unit, re.MULTILINE)
    assert exec_start is not None, unit
    write_drop_in(
        guest, f"[Service]\nExecStart=\nExecStart={exec_start[1]} --idle-exit {IDLE_EXIT}\n"
    )


def namespace(guest: Guest, pid: int | str, kind: str) -> str:
    return guest.root("readlink", f"/proc/{pid}/ns/{kind}").stdout.strip()


def user_manager(guest: Guest) -> str:
    """The pid of the test user's systemd (the manager the daemon would share namespaces with)."""
    return guest.root(
        "systemctl", "show", "--value", "--property=MainPID", "user@1000.service"
    ).stdout.strip()


def unit_setting(name: str, key: str) -> str:
    match = re.search(rf"^{key}=(.*)$", (REPO / "systemd" / name).read_text(), re.MULTILINE)
    assert match is not None
    return match[1]


# --- the service's life --------------------------------------------------------------


def test_install_service_socket_enable_listens_on_both_loopbacks(guest: Guest) -> None:
    install(guest, "--socket", "--enable")

    for unit in ("oauth-bridge.socket", "oauth-bridge-control.socket"):
        shown = guest.show(unit, "ActiveState", "SubState", "UnitFileState")
        assert shown == {
            "ActiveState": "active",
            "SubState": "listening",
            "UnitFileState": "enabled",
        }
    assert state_of(guest) == "inactive"  # nothing connected yet
    listening = guest.listening()
    for address in ("127.0.0.1:8765", "[::1]:8765", "/run/user/1000/oauth-bridge/control.sock"):
        assert address in listening, listening


@pytest.mark.parametrize("host", LOOPBACKS)
def test_expect_activates_the_service_and_the_browser_completes_it(guest: Guest, host: str) -> None:
    install(guest, "--socket", "--enable")
    state = new_state()

    waiting = expect(guest, state, "--wait", "--timeout", "30")
    poll("activation through the control socket", lambda: state_of(guest) == "active")
    browser_callback(guest, state, host)

    assert ended(waiting)["status"] == "succeeded"


@pytest.mark.parametrize("host", LOOPBACKS)
def test_login_activates_the_service_and_the_browser_completes_it(guest: Guest, host: str) -> None:
    install(guest, "--socket", "--enable")

    login, state = start_login(guest)
    assert state_of(guest) == "active"
    browser_callback(guest, state, host)

    done = ended(login)
    assert done["status"] == "succeeded"
    assert done["redirect_uri"] == "http://127.0.0.1:8765/callback/github"
    assert done["result"]["token"].startswith("token-github-")


def test_ready_and_status_as_systemd_shows_them(guest: Guest) -> None:
    install(guest, "--socket", "--enable")
    assert guest.show(SERVICE, "StatusText", "ActiveState") == {
        "StatusText": "",
        "ActiveState": "inactive",
    }

    healthz(guest)

    # Type=notify: systemd calls it active only once READY=1 came.
    assert guest.show(SERVICE, "Type", "NotifyAccess", "ActiveState", "SubState", "StatusText") == {
        "Type": "notify",
        "NotifyAccess": "main",
        "ActiveState": "active",
        "SubState": "running",
        "StatusText": "ready on http://127.0.0.1:8765; 0 pending",
    }
    registered(guest, new_state())
    poll(
        "STATUS= with the pending login",
        lambda: guest.show(SERVICE, "StatusText")["StatusText"] == "1 pending",
    )


def test_watchdog_restarts_a_hung_daemon_and_a_pending_login_survives(guest: Guest) -> None:
    install(guest, "--socket", "--enable")
    healthz(guest)
    assert unit_setting(SERVICE, "WatchdogSec") == "30"
    assert guest.show(SERVICE, "WatchdogUSec")["WatchdogUSec"] == "30s"
    guest.systemctl("stop", SERVICE)
    write_drop_in(guest, "[Service]\nWatchdogSec=2\n")  # the same mechanism, sooner
    login, state = start_login(guest)
    assert guest.show(SERVICE, "WatchdogUSec")["WatchdogUSec"] == "2s"
    hung = guest.main_pid()

    # The event loop stops: no more WATCHDOG=1.
    guest.root("python3", "-c", f"import os, signal; os.kill({hung}, signal.SIGSTOP)")

    def restarted() -> bool:
        shown = guest.show(SERVICE, "MainPID", "ActiveState", "NRestarts")
        return shown["ActiveState"] == "active" and shown["MainPID"] not in ("0", str(hung))

    poll("systemd to kill the hung daemon and start another", restarted)
    assert guest.show(SERVICE, "NRestarts")["NRestarts"] == "1"
    assert "Watchdog timeout" in guest.journal()
    browser_callback(guest, state)
    assert ended(login)["status"] == "succeeded"


def test_idle_exit_keeps_the_sockets_and_the_next_connection_starts_it_again(
    guest: Guest,
) -> None:
    install(guest, "--socket", "--enable")
    assert "--idle-exit 300" in unit_setting(SERVICE, "ExecStart")
    idle_exit_drop_in(guest)
    healthz(guest)
    first = guest.main_pid()

    poll("the idle exit", lambda: state_of(guest) == "inactive", within=IDLE_EXIT * 5)

    assert guest.show(SERVICE, "Result")["Result"] == "success"
    assert "with nothing pending: exiting" in guest.journal()
    assert state_of(guest, "oauth-bridge.socket") == "active"
    healthz(guest)
    assert guest.main_pid() not in (0, first)


def test_no_idle_exit_while_a_login_is_pending(guest: Guest) -> None:
    install(guest, "--socket", "--enable")
    idle_exit_drop_in(guest)
    login = registered(guest, new_state())
    pid = guest.main_pid()

    # Watch for three idle periods: the daemon must stay up (this is the observation,
    # not a wait for something to happen).
    deadline = time.monotonic() + IDLE_EXIT * 3
    while time.monotonic() < deadline:
        assert (state_of(guest), guest.main_pid()) == ("active", pid)
        time.sleep(0.2)

    guest.oauth_bridge("cancel", login["id"])
    poll("the idle exit once nothing is pending", lambda: state_of(guest) == "inactive",
         within=IDLE_EXIT * 5)  # fmt: skip


def test_sandbox_is_in_effect_and_a_login_still_works(guest: Guest) -> None:
    install(guest, "--socket", "--sandbox", "--enable")

    login, state = start_login(guest)
    browser_callback(guest, state)

    assert ended(login)["status"] == "succeeded"
    shown = guest.show(SERVICE, "PrivateUsers", "ProtectSystem", "ProtectKernelLogs", "PrivateTmp")
    assert shown == {
        "PrivateUsers": "yes",
        "ProtectSystem": "strict",
        "ProtectKernelLogs": "yes",
        "PrivateTmp": "yes",
    }
    pid = guest.main_pid()
    manager = user_manager(guest)
    for kind in ("user", "mnt"):
        assert namespace(guest, pid, kind) != namespace(guest, manager, kind)
    read_only = guest.root("nsenter", f"--target={pid}", "--mount", "--", "touch", "/usr/x",
                           check=False)  # fmt: skip
    assert "Read-only file system" in read_only.stderr


def test_uninstall_removes_the_units_and_stops_listening(guest: Guest) -> None:
    install(guest, "--socket", "--sandbox", "--enable")
    healthz(guest)

    install(guest, "--uninstall", "--enable")

    assert "oauth-bridge" not in guest.sh(f"ls -AR {UNIT_DIR}").stdout
    units = guest.systemctl("list-units", "--all", "--plain", "--no-legend", "oauth-bridge*")
    assert units.stdout.strip() == ""
    assert ":8765" not in guest.listening()


# --- the bugs a live user manager showed ---------------------------------------------


@pytest.mark.parametrize("where", ["config", "environment"])
def test_socket_units_listen_on_the_configured_port(guest: Guest, where: str) -> None:
    port = 9876 if where == "config" else 9877
    env = None
    if where == "config":
        guest.sh(f"printf 'port = {port}\\n' >> ~/.config/oauth-bridge/config.toml")
    else:
        env = {"OAUTH_BRIDGE_PORT": str(port)}

    said = install(guest, "--socket", "--enable", env=env)

    assert f"listening on 127.0.0.1:{port} and [::1]:{port}" in said
    listening = guest.listening()
    assert f"127.0.0.1:{port}" in listening
    assert f"[::1]:{port}" in listening
    assert ":8765" not in listening
    login, state = start_login(guest)
    browser_callback(guest, state, "[::1]", port)
    assert ended(login)["redirect_uri"] == f"http://127.0.0.1:{port}/callback/github"
    assert "but the configured port is" not in guest.journal()


def test_socket_install_refuses_port_0(guest: Guest) -> None:
    result = guest.oauth_bridge(
        "install-service", "--socket", "--enable", env={"OAUTH_BRIDGE_PORT": "0"}, check=False
    )

    assert result.returncode == 2
    assert "socket unit listens on one fixed port" in result.stderr
    assert guest.sh(f"ls {UNIT_DIR}", check=False).stdout.strip() == ""


def test_reinstall_restarts_a_running_daemon_onto_the_new_units(guest: Guest) -> None:
    install(guest, "--socket", "--enable")
    healthz(guest)
    before = guest.main_pid()

    said = install(guest, "--socket", "--sandbox", "--enable")

    assert "$ systemctl --user try-restart oauth-bridge.service" in said
    now = guest.main_pid()
    assert state_of(guest) == "active"
    assert now not in (0, before)
    manager = user_manager(guest)
    assert namespace(guest, now, "user") != namespace(guest, manager, "user")  # sandboxed


def test_reinstall_leaves_a_daemon_with_a_login_under_way_and_says_what_to_run(
    guest: Guest,
) -> None:
    install(guest, "--socket", "--enable")
    registered(guest, new_state())
    before = guest.main_pid()

    said = install(guest, "--socket", "--sandbox", "--enable")

    assert "1 login(s) under way" in said
    assert "  systemctl --user try-restart oauth-bridge.service" in said
    assert guest.main_pid() == before


def test_uninstall_leaves_no_failed_unit_behind(guest: Guest) -> None:
    # Another program holds the port: the socket unit fails to listen.
    guest.sh(
        "systemd-run --user --quiet --unit=squatter python3 -m http.server --bind 127.0.0.1 9876"
    )
    try:
        poll("the squatter", lambda: "127.0.0.1:9876" in guest.listening())
        guest.sh("printf 'port = 9876\\n' >> ~/.config/oauth-bridge/config.toml")
        failed = guest.oauth_bridge("install-service", "--socket", "--enable", check=False)
        assert failed.returncode != 0
        assert guest.show("oauth-bridge.socket", "ActiveState")["ActiveState"] == "failed"

        install(guest, "--uninstall", "--enable")
    finally:
        guest.systemctl("stop", "squatter")

    units = guest.systemctl("list-units", "--all", "--plain", "--no-legend", "oauth-bridge*")
    assert units.stdout.strip() == ""
