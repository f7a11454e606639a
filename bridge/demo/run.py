"""``oauth-bridge demo``: one login through a real daemon, a demo provider and control plane.

The daemon is started by the same auto-start path as ``expect``, the login is registered
and checked by the same functions, and the browser's part is played over plain HTTP
(or by the user's real browser with ``--browser``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from bridge.client.api import Bridge, Login
from bridge.client.autostart import ensure_daemon
from bridge.client.waiting import tell_where_to_sign_in
from bridge.errors import EXIT_FOR_STATUS, BridgeError, ExitCode
from bridge.paths import Paths


class Timer:
    def __init__(self) -> None:
        self.hops: list[tuple[str, float]] = []

    def hop(self, name: str, started: float) -> float:
        elapsed = time.perf_counter() - started
        self.hops.append((name, elapsed))
        return elapsed


def step(n: int, text: str) -> None:
    print(f"{n}. {text}", flush=True)


def detail(text: str) -> None:
    print(f"   {text}", flush=True)


def get(url: str) -> tuple[int, str, str]:
    """GET one URL without following redirects: return status, Location and body."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = connection.getresponse()
        return response.status, response.getheader("Location", ""), response.read().decode()
    finally:
        connection.close()


def run_demo(args: argparse.Namespace) -> int:
    from bridge.demo.servers import DEMO_API_KEY, PROVIDER_ID, DemoServers

    print(
        "oauth-bridge demo: a real daemon, a demo OAuth provider and a demo control plane,"
        " all on 127.0.0.1.\n",
        flush=True,
    )
    timer = Timer()
    with tempfile.TemporaryDirectory(prefix="oauth-bridge-demo-") as tmp, DemoServers() as world:
        base = Path(tmp)
        paths = Paths(
            runtime_dir=base / "run", state_dir=base / "state", config_file=base / "config.toml"
        )
        paths.config_file.write_text("", encoding="utf-8")
        # The daemon inherits these: its own dirs, port and control plane, so the demo
        # never touches a daemon or login store of yours.
        os.environ.update(
            {
                "OAUTH_BRIDGE_RUNTIME_DIR": str(paths.runtime_dir),
                "OAUTH_BRIDGE_STATE_DIR": str(paths.state_dir),
                "OAUTH_BRIDGE_CONFIG": str(paths.config_file),
                "OAUTH_BRIDGE_PORT": "0",
                "OAUTH_BRIDGE_CONTROL_PLANE_URL": world.control_plane_url,
                "LANGSMITH_API_KEY": DEMO_API_KEY,
            }
        )
        for name in ("LANGSMITH_WORKSPACE_ID", "OAUTH_BRIDGE_BEARER_TOKEN", "NOTIFY_SOCKET"):
            os.environ.pop(name, None)
        step(
            1,
            f"Demo provider on {world.provider_url}, demo control plane on "
            f"{world.control_plane_url}.",
        )

        started = time.perf_counter()
        info = ensure_daemon(paths, start=True)
        timer.hop("start the daemon", started)
        daemon_pid = int(info["pid"])
        try:
            return _flow(args, paths, info, world, timer, PROVIDER_ID)
        finally:
            os.kill(daemon_pid, signal.SIGTERM)
            _wait_gone(paths)


def _flow(
    args: argparse.Namespace,
    paths: Paths,
    info: dict[str, Any],
    world: Any,
    timer: Timer,
    provider_id: str,
) -> int:
    daemon_url = str(info["url"])
    detail(
        f"started oauth-bridge (pid {info['pid']}) at {daemon_url} "
        f"in {timer.hops[-1][1] * 1000:.0f} ms"
    )

    started = time.perf_counter()
    bridge = Bridge(paths=paths)
    # Loopback whatever the rule would say: the demo's browser is on this machine.
    login = bridge.login(provider_id, ["profile"], callback="loopback")
    timer.hop("daemon -> control plane: start the login", started)
    auth_url = login.auth_url
    if auth_url is None:
        raise BridgeError(f"the demo control plane did not start a login: {login.status}")
    step(
        2,
        "The tool ran 'oauth-bridge login --provider demo-provider --scope profile': the "
        "daemon asked the control plane to start the login (the state is made there), with "
        "its own callback as redirect_uri, and got the authorization URL:",
    )
    detail(_redact(auth_url))
    step(3, f"Registered login {login.id}; its state is pending in the daemon.")

    if args.browser:
        step(4, "Opening your browser at the demo provider: click 'Authorize' (or 'Deny').")
        tell_where_to_sign_in(
            login.open_url or auth_url,
            daemon_url=daemon_url,
            open_it=True,
            opener=bridge.open_in_browser,
        )
        started = time.perf_counter()
        login = login.wait(timeout=300)
        timer.hop("you, in the browser", started)
    else:
        login = _play_browser(auth_url, login, world, timer)

    status_ = login.status
    result = login.result or {}
    print(flush=True)
    if status_ == "succeeded":
        print(
            f"✓ Succeeded: the control plane answered {result['control_plane_status']}"
            f" with {json.dumps(result['control_plane_body'])}, and its wait endpoint "
            f"handed over the token ({'present' if login.token else 'none'}; "
            "'oauth-bridge login --json' prints it)."
        )
    else:
        print(f"✗ The login ended {status_}: {json.dumps(result)}")
    print("\nHow long each hop took:")
    for name, seconds in timer.hops:
        print(f"  {name:<48} {seconds * 1000:8.1f} ms")
    print(
        "\nNext: set LANGSMITH_API_KEY, then have your tool run\n"
        "  oauth-bridge login --provider <id> --scope <scope> --json\n"
        "or, in Python, Bridge().login('<id>', scopes=[...], open_browser=True).wait().\n"
        "The README's section for desktop tool authors shows it in shell, Python and Node."
    )
    return EXIT_FOR_STATUS.get(status_, ExitCode.FAILED)


def _play_browser(auth_url: str, login: Login, world: Any, timer: Timer) -> Login:
    step(4, "Playing the browser (headless):")
    started = time.perf_counter()
    status, _, page = get(auth_url)
    approve = re.search(r"id='approve' href='([^']+)'", page)
    if status != 200 or approve is None:
        raise BridgeError(f"the demo provider's page did not load (HTTP {status})")
    timer.hop("browser -> provider: authorize page", started)
    detail(f"GET the provider's authorize page -> {status}; the user clicks 'Authorize'")

    started = time.perf_counter()
    status, callback, _ = get(urljoin(world.provider_url, approve.group(1).replace("&amp;", "&")))
    timer.hop("provider -> redirect with code and state", started)
    detail(f"the provider redirects ({status}) to {_redact(callback)}")

    started = time.perf_counter()
    status, result_path, _ = get(callback)
    timer.hop("browser -> daemon -> control plane (forward)", started)
    detail(
        f"the daemon checked the state, consumed it, forwarded {{code, state}} to the "
        f"control plane (which took {world.forward_seconds * 1000:.2f} ms), and redirected "
        f"({status}) to {result_path}"
    )

    started = time.perf_counter()
    waited = login.wait(timeout=30)
    timer.hop("the tool's wait returns (token confirmed)", started)
    detail(f"the tool's wait returned: {waited.status}")

    started = time.perf_counter()
    status, _, page = get(urljoin(callback, result_path))
    timer.hop("browser -> result page", started)
    shown = re.search(r'name="oauth-bridge-status" content="([^"]+)"', page)
    detail(
        f"the browser shows the result page ({status}, {shown.group(1) if shown else '?'}); "
        "the code is no longer in its address bar"
    )
    return waited


def _redact(url: str) -> str:
    """Show the redirect's shape without its one-time code."""
    return re.sub(r"(code|state)=[^&]+", lambda m: f"{m.group(1)}=…", url)


def _wait_gone(paths: Paths, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while paths.daemon_json.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
