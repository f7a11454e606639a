"""``oauth-bridge doctor``: check what a login needs here, and say what to do about each problem."""

from __future__ import annotations

import argparse
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bridge.client.autostart import ensure_daemon, running_daemon
from bridge.client.reach import (
    CALLBACK_VARIABLE,
    Verdict,
    callback_for,
    configured_callback,
    decide,
)
from bridge.client.terminal import printable, say
from bridge.client.transport import ControlClient
from bridge.errors import BridgeError, ExitCode, UsageError
from bridge.paths import Paths, check_private_dir, default_paths

DEFAULT_PORT = 8765


@dataclass(frozen=True)
class Check:
    """One finding: passed (True), failed (False), or only information (None)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def run_doctor(args: argparse.Namespace) -> int:
    paths = default_paths()
    checks = [*directories(paths)]
    status, daemon_checks = daemon(paths, start=not args.no_start)
    checks += daemon_checks
    if status is not None:
        checks.append(credentials(status))
        checks += control_plane(paths)
        if args.browser:
            checks.append(browser(paths, timeout=args.browser_timeout))
    port = int(str(status["url"]).rsplit(":", 1)[1]) if status else configured_port()
    verdict = decide(os.environ)
    decided, callback_check = callback(os.environ, verdict)
    checks.append(callback_check)
    checks += environment(port, verdict)
    failed = [c for c in checks if c.ok is False]
    if args.json:
        print(
            json.dumps(
                {"ok": not failed, "callback": decided, "checks": [asdict(c) for c in checks]}
            )
        )
    else:
        for check in checks:
            mark = {True: "✓", False: "✗", None: "•"}[check.ok]
            say(f"{mark} {check.name}: {check.detail}")
            if check.fix:
                say(f"    {check.fix}")
        say("All checks passed." if not failed else f"{len(failed)} problem(s) found.")
    return ExitCode.PROBLEMS if failed else ExitCode.OK


def directories(paths: Paths) -> list[Check]:
    found = []
    for name, path, variable in (
        ("runtime dir", paths.runtime_dir, "OAUTH_BRIDGE_RUNTIME_DIR"),
        ("state dir", paths.state_dir, "OAUTH_BRIDGE_STATE_DIR"),
    ):
        if not path.exists():
            found.append(Check(name, True, f"{path} (created when the daemon starts)"))
            continue
        try:
            check_private_dir(path, variable)
        except BridgeError as exc:
            found.append(Check(name, False, exc.message, f"or set {variable}"))
        else:
            found.append(Check(name, True, str(path)))
    return found


def daemon(paths: Paths, *, start: bool) -> tuple[dict[str, Any] | None, list[Check]]:
    try:
        status = running_daemon(paths)
        started = False
        if status is None and start:
            status = ensure_daemon(paths, start=True)
            started = True
    except BridgeError as exc:
        return None, [Check("daemon", False, exc.message, port_holder(configured_port()))]
    if status is None:
        return None, [
            Check(
                "daemon",
                False,
                "no daemon runs",
                "run 'oauth-bridge serve', or leave out --no-start: "
                + (port_holder(configured_port()) or "any login starts one"),
            )
        ]
    detail = f"oauth-bridge {status['version']} (pid {status['pid']}) at {status['url']}" + (
        ", started now" if started else ""
    )
    return status, [Check("daemon", True, detail)]


def configured_port() -> int:
    try:
        return int(os.environ.get("OAUTH_BRIDGE_PORT") or DEFAULT_PORT)
    except ValueError:
        return DEFAULT_PORT


def port_holder(port: int) -> str:
    """Say who holds the port when no daemon of ours answers, or '' when it is free."""
    if port == 0:
        return ""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", port)) != 0:
            return ""
    return (
        f"port {port} on 127.0.0.1 is held by another program: free it, or choose another "
        "port (OAUTH_BRIDGE_PORT, and the redirect URI the providers know)"
    )


def credentials(status: dict[str, Any]) -> Check:
    sources = status.get("credentials") or {}
    if sources.get("api_key") or sources.get("bearer_token"):
        where = ", ".join(f"{k} from the {v}" for k, v in sources.items() if v)
        return Check("credentials", True, where)
    return Check(
        "credentials",
        False,
        "the daemon has no API key and no bearer token: LangSmith will refuse every login",
        "set LANGSMITH_API_KEY where the daemon starts (or api_key_file in the config "
        "file), then 'oauth-bridge stop'",
    )


def control_plane(paths: Paths) -> list[Check]:
    try:
        answer = ControlClient(paths.control_socket).request(
            "GET", "/v1/checks/control-plane", timeout=90
        )
    except BridgeError as exc:
        return [Check("control plane", False, f"the daemon did not answer: {exc.message}")]
    body: dict[str, Any] = answer.body if isinstance(answer.body, dict) else {}
    url = printable(body.get("control_plane_url", "?"))
    if not body.get("reachable"):
        return [
            Check(
                "control plane",
                False,
                f"{url} cannot be reached: {printable(body.get('message', answer.message))}",
                "check the URL (--control-plane, OAUTH_BRIDGE_CONTROL_PLANE_URL) and the "
                "proxy (HTTPS_PROXY) the daemon was started with",
            )
        ]
    if not body.get("accepted"):
        return [
            Check(
                "control plane",
                False,
                f"{url} refused: {printable(body.get('message', ''))}",
                "fix the daemon's credentials, then 'oauth-bridge stop'",
            )
        ]
    found = [Check("control plane", True, f"{url} reached, and it accepts the credentials")]
    for provider in body.get("providers", []):
        name = printable(provider["provider_id"])
        allows = provider.get("allows_this_daemon")
        if allows is None:
            found.append(
                Check(
                    f"provider {name}", None, "LangSmith does not say which redirect URIs it allows"
                )
            )
        elif allows:
            found.append(Check(f"provider {name}", True, f"allows {provider['redirect_uri']}"))
        else:
            found.append(
                Check(
                    f"provider {name}",
                    False,
                    f"does not allow {provider['redirect_uri']} (LangSmith will send the "
                    "browser to its own page)",
                    f"run 'oauth-bridge providers allow-loopback {name}'",
                )
            )
    return found


def browser(paths: Paths, *, timeout: float) -> Check:
    from bridge.client.browser import open_url

    client = ControlClient(paths.control_socket)
    try:
        issued = client.request("POST", "/v1/checks/browser").body
        url, token = str(issued["url"]), str(issued["token"])
    except (BridgeError, KeyError, TypeError):
        return Check("browser", False, "the daemon gave no self-test address")
    opened = open_url(url)
    say(f"Open this address in a browser on this machine: {url}" if not opened else f"Opened {url}")
    try:
        seen = client.request(
            "GET", f"/v1/checks/browser/{token}?wait={timeout:g}", timeout=timeout + 30
        ).body
    except BridgeError as exc:
        return Check("browser", False, f"the daemon did not answer: {exc.message}")
    if isinstance(seen, dict) and seen.get("seen"):
        return Check("browser", True, "a browser on this machine reached the daemon")
    return Check(
        "browser",
        False,
        f"no browser opened {url} within {timeout:g}s",
        "open it in the browser you sign in with; if that browser runs elsewhere, see "
        "the environment advice below",
    )


def callback(env: Mapping[str, str], verdict: Verdict) -> tuple[dict[str, Any], Check]:
    """Say which callback a login takes here and why: the one rule's verdict, or the variable's."""
    decided: dict[str, Any] = {
        "decided": verdict.callback,
        "why": verdict.why,
        "environment": verdict.environment,
        "can_open_browser": verdict.can_open_browser,
        "set_by": None,
    }
    try:
        choice = configured_callback(env)
    except UsageError as exc:
        return decided, Check(
            "callback",
            False,
            exc.message,
            f"set {CALLBACK_VARIABLE} to auto, loopback or hosted, or unset it",
        )
    if choice is None or choice == "auto":
        return decided, Check("callback", None, f"{verdict.callback} ({verdict.why})")
    decided.update(decided=callback_for(choice, verdict), set_by=CALLBACK_VARIABLE)
    return decided, Check(
        "callback",
        None,
        f"{choice} (set by {CALLBACK_VARIABLE}; left to itself the rule takes "
        f"{verdict.callback}: {verdict.why})",
    )


def environment(port: int, verdict: Verdict) -> list[Check]:
    """Say how a loopback login can work where the browser is not on this machine."""
    paste = "or, after signing in, copy the address the browser ended on and run 'oauth-bridge complete'"
    hosted = "a login takes the hosted callback here, which needs no port forward"
    advice = {
        "ssh": (
            "an SSH session: the browser is on your own machine",
            f"{hosted}; for a loopback one, forward the port from your machine: "
            f"ssh -L {port}:127.0.0.1:{port} <this host>; {paste}",
        ),
        "wsl": (
            "WSL: the browser is Windows'",
            f"WSL 2 forwards 127.0.0.1:{port} to Windows by default (localhostForwarding); {paste}",
        ),
        "codespace": (
            "a GitHub Codespace: the browser is on your machine",
            f"{hosted}; for a loopback one, forward the port: "
            f"gh codespace ports forward {port}:{port}; {paste}",
        ),
        "container": (
            "a container: the browser is outside it",
            f"{hosted}; for a loopback one, forward port {port} to this container's "
            f"127.0.0.1 (VS Code: the Ports view, or forwardPorts in devcontainer.json); {paste}",
        ),
        "vscode-remote": (
            "VS Code Remote: the browser is on your machine",
            f"VS Code forwards port {port} when its BROWSER helper opens an address on it "
            f"(its Ports view shows it; forwardPorts in devcontainer.json fixes it); {paste}",
        ),
    }.get(verdict.environment)
    if advice is None:
        return []
    return [Check("environment", None, *advice)]
