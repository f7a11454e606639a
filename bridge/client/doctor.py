"""``oauth-bridge doctor``: check what a login needs here, and say what to do about each problem."""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
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
from bridge.errors import (
    BridgeError,
    DaemonNotAnswering,
    DaemonUnavailable,
    ExitCode,
    UsageError,
)
from bridge.paths import Paths, check_private_dir, default_paths

DEFAULT_PORT = 8765
# What every check but --browser's (which waits for a person) may take in all: a control
# plane that is down or hung must not keep doctor for the daemon's own deadlines.
BUDGET_SECONDS = 3.5
# The daemon's answer for the control plane: it answers in well under a second when the
# control plane does; past this, doctor looks at the control plane itself.
CONTROL_PLANE_SECONDS = 3.0
# How long doctor's own look at the control plane's address (a TCP connect) may take.
PROBE_SECONDS = 0.5
# Past the budget a check still gets this long: enough for a daemon on this machine.
LEAST_SECONDS = 0.2
AGENT_AUTH_FIX = (
    "ask an admin of your LangSmith organization to enable Agent Auth; until then a tool "
    "can get the authorization URL itself and use 'oauth-bridge expect --auth-url -'"
)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")


class Budget:
    """The time doctor's checks have left, so that each waits a bounded share of it."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds

    def take(self, most: float) -> float:
        """Return how long the next step may wait: at most ``most``, within what is left."""
        return max(LEAST_SECONDS, min(most, self.ends - time.monotonic()))


@dataclass(frozen=True)
class Check:
    """One finding: passed (True), failed (False), or only information (None)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


def run_doctor(args: argparse.Namespace) -> int:
    budget = Budget(BUDGET_SECONDS)
    paths = default_paths()
    checks = [*directories(paths)]
    status, daemon_checks = daemon(paths, start=not args.no_start, budget=budget)
    checks += daemon_checks
    if status is not None:
        checks.append(credentials(status))
        checks += control_plane(paths, status, budget=budget)
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


def daemon(
    paths: Paths, *, start: bool, budget: Budget | None = None
) -> tuple[dict[str, Any] | None, list[Check]]:
    budget = budget or Budget(BUDGET_SECONDS)
    try:
        # Bounded: a daemon that holds the socket and does not answer is named as such.
        status = running_daemon(paths, timeout=budget.take(CONTROL_PLANE_SECONDS))
        started = False
        if status is None and start:
            status = ensure_daemon(paths, start=True)
            started = True
    except DaemonNotAnswering as exc:
        # Its port is held, by this very daemon: the message says what to do.
        return None, [Check("daemon", False, exc.message)]
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


def control_plane(
    paths: Paths, status: Mapping[str, Any] | None = None, *, budget: Budget | None = None
) -> list[Check]:
    budget = budget or Budget(BUDGET_SECONDS)
    url = printable((status or {}).get("control_plane_url", "the control plane"))
    waited = budget.take(CONTROL_PLANE_SECONDS)
    try:
        answer = ControlClient(paths.control_socket).request(
            "GET", "/v1/checks/control-plane", timeout=waited
        )
    except DaemonUnavailable as exc:
        if exc.timed_out:
            # The daemon answered its status a moment ago: what it waits on is the
            # control plane. Look at it from here to say whether it is down or hung.
            return [silent_control_plane(str(url), waited, budget)]
        return [Check("control plane", False, f"the daemon did not answer: {exc.message}")]
    except BridgeError as exc:
        return [Check("control plane", False, f"the daemon did not answer: {exc.message}")]
    body: dict[str, Any] = answer.body if isinstance(answer.body, dict) else {}
    url = printable(body.get("control_plane_url", url))
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
        message = str(body.get("message", ""))
        if agent_auth_disabled(body.get("control_plane_status"), message):
            return [
                Check(
                    "control plane",
                    False,
                    f"{url} answered that Agent Auth is not enabled for this LangSmith "
                    f"organization (HTTP 403): 'oauth-bridge login' cannot work until it is",
                    AGENT_AUTH_FIX,
                )
            ]
        return [
            Check(
                "control plane",
                False,
                f"{url} refused: {printable(message)}",
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


def agent_auth_disabled(control_plane_status: object, message: str) -> bool:
    """Say whether a refusal is LangSmith's "Agent Auth is not enabled for this organization".

    The daemon's message carries the control plane's own detail, as its refusal does.
    """
    return control_plane_status == 403 and "not enabled" in message


def silent_control_plane(url: str, waited: float, budget: Budget) -> Check:
    """Say why the control plane gave the daemon no answer in time: down, or hung."""
    fix = (
        "check the URL (--control-plane, OAUTH_BRIDGE_CONTROL_PLANE_URL) and the proxy "
        "(HTTPS_PROXY) the daemon was started with; if they are right, the control plane "
        "itself is in trouble: try again later"
    )
    proxy = next((name for name in PROXY_VARIABLES if os.environ.get(name)), None)
    if proxy is not None:
        # Through a proxy, a connection from here says nothing of the daemon's.
        return Check(
            "control plane",
            False,
            f"{url} gave the daemon no answer within {waited:.1f}s (through the proxy in "
            f"{proxy}): it is down or hung, or the proxy is",
            fix,
        )
    reached = probe(url, budget.take(PROBE_SECONDS))
    if reached is None:
        return Check(
            "control plane",
            False,
            f"{url} is hung: it accepts connections but gave no answer within {waited:.1f}s",
            fix,
        )
    return Check("control plane", False, f"{url} cannot be reached: {reached}", fix)


def probe(url: str, timeout: float) -> str | None:
    """Connect to the URL's host and port; return why that failed, or None if it connected.

    In a thread: a name look-up takes no timeout, and must not hold doctor up either.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "its URL has no valid port"
    host = parts.hostname
    if not host:
        return "its URL names no host"
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(None)
        except TimeoutError:
            outcome.append(f"no connection to {host}:{port} within {timeout:.1f}s")
        except ConnectionRefusedError:
            outcome.append(f"{host}:{port} refused the connection (nothing listens there)")
        except socket.gaierror as exc:
            outcome.append(f"cannot look up {host}: {exc.strerror or exc}")
        except OSError as exc:
            outcome.append(f"cannot connect to {host}:{port}: {exc.strerror or exc}")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 0.1)
    if not outcome:
        return f"looking up {host} did not finish within {timeout:.1f}s"
    return outcome[0]


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
