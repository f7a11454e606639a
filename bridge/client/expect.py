"""``oauth-bridge expect``: register a login, open the browser, wait for the outcome."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from bridge.client.autostart import ensure_daemon
from bridge.client.terminal import say
from bridge.client.transport import ControlClient
from bridge.errors import EXIT_FOR_STATUS, BridgeError, DaemonUnavailable, ExitCode, UsageError
from bridge.paths import default_paths

LOOPBACK_NAMES = {"127.0.0.1", "::1", "localhost"}
# The long-poll's slice while a live status line is shown (it ticks once a second).
TICK_SECONDS = 1.0
# How long past the TTL to wait for the daemon's own word that the login expired.
EXPIRY_MARGIN = 2.0


def state_from_auth_url(auth_url: str) -> tuple[str, str | None]:
    """Return the authorization URL's state and redirect_uri, refusing a URL without state."""
    parts = urlsplit(auth_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--auth-url is not an http(s) URL: {auth_url!r}")
    query = parse_qs(parts.query, keep_blank_values=True)
    states = query.get("state", [])
    if len(states) != 1 or not states[0]:
        raise UsageError(
            "the authorization URL has no state parameter"
            if not states or not states[0]
            else "the authorization URL has more than one state parameter"
        )
    redirects = query.get("redirect_uri", [])
    return states[0], redirects[0] if redirects else None


def check_redirect_uri(redirect_uri: str, *, daemon_url: str, provider_id: str) -> None:
    """Refuse a redirect_uri that would send the browser anywhere but this daemon's callback."""
    port = urlsplit(daemon_url).port
    expected = f"{daemon_url}/callback/{quote(provider_id, safe='')}"
    found = urlsplit(redirect_uri)
    try:
        found_port = found.port
    except ValueError:
        found_port = None
    ok = (
        found.scheme == "http"
        and (found.hostname or "") in LOOPBACK_NAMES
        and found_port == port
        and found.path == f"/callback/{quote(provider_id, safe='')}"
    )
    if not ok:
        raise UsageError(
            "the authorization URL's redirect_uri does not point at this oauth-bridge:\n"
            f"  expected: {expected}\n"
            f"  found:    {redirect_uri}\n"
            "Register the expected address as the redirect URI (the provider's app settings "
            "and the control plane's flow), or run the daemon on that port with --port."
        )


def run_expect(args: argparse.Namespace) -> int:
    paths = default_paths()
    if args.open and not args.auth_url:
        raise UsageError("--open needs --auth-url: with --state alone there is nothing to open")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout bounds --wait; add --wait")
    state, redirect_uri = (
        state_from_auth_url(args.auth_url) if args.auth_url else (args.state, None)
    )
    info = ensure_daemon(paths, start=not args.no_start)
    daemon_url = str(info["url"])
    if args.auth_url:
        if redirect_uri is None:
            say(
                "note: the authorization URL has no redirect_uri, so it cannot be checked; "
                f"the provider must redirect to {daemon_url}/callback/{quote(args.provider, safe='')}"
            )
        else:
            check_redirect_uri(redirect_uri, daemon_url=daemon_url, provider_id=args.provider)

    client = ControlClient(paths.control_socket)
    body: dict[str, Any] = {"provider_id": args.provider, "state": state, "ttl_seconds": args.ttl}
    if args.issuer:
        body["expected_issuer"] = args.issuer
    answer = client.request("POST", "/v1/logins", body)
    if answer.status == 503:
        raise DaemonUnavailable(answer.message)
    if answer.status != 201:
        raise UsageError(f"the daemon refused the login: {answer.message}")
    login: dict[str, Any] = answer.body
    if not args.json or not args.wait:
        say(
            f"Expecting the {args.provider} redirect at {login['redirect_uri']} "
            f"(login {login['id']}, until {_clock(login['expires_at'])})."
        )

    if args.open:
        open_browser(args.auth_url, daemon_url=daemon_url)

    if not args.wait:
        print(json.dumps(login) if args.json else login["id"], flush=True)
        return ExitCode.OK
    return wait_for_outcome(client, login, timeout=args.timeout, as_json=args.json)


def open_browser(url: str, *, daemon_url: str) -> None:
    import webbrowser

    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    opened = False
    if not headless:
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
    if opened:
        say("Opened the browser; sign in there.")
        return
    say(
        "Could not open a browser here. Open this address in a browser:\n\n"
        f"  {url}\n\n"
        "If that browser runs on another machine, its redirect to "
        f"{daemon_url} will fail there: copy the address it ends on\n"
        "(starting with http://127.0.0.1...) and run here:\n\n"
        "  oauth-bridge complete '<the address>'\n"
    )


def wait_for_outcome(
    client: ControlClient, login: dict[str, Any], *, timeout: float | None, as_json: bool
) -> int:
    """Long-poll until the login ends; Ctrl-C cancels it, --timeout gives up (exit 12)."""
    live = sys.stderr.isatty()
    started = time.monotonic()
    expires = _epoch(login["expires_at"])
    # Past the TTL the daemon expires the login itself; the margin lets us see that answer.
    deadline = started + (
        timeout if timeout is not None else max(0.0, expires - time.time()) + EXPIRY_MARGIN
    )
    path = f"/v1/logins/{login['id']}"
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and timeout is None and login["status"] == "forwarding":
                # A redirect that came just in time: the daemon bounds its forward, so
                # waiting on for the outcome cannot hang, and giving up would misreport it.
                remaining = TICK_SECONDS
            elif remaining <= 0:
                return _timed_out(login, timeout, as_json, live)
            if live:
                _status_line(login, expires)
            slice_ = min(remaining, TICK_SECONDS if live else 300.0)
            answer = client.request("GET", f"{path}?wait={slice_:.3f}", timeout=slice_ + 30)
            if answer.status != 200:
                raise BridgeError(f"the daemon lost the login: {answer.message}")
            login = answer.body
            if login["status"] in EXIT_FOR_STATUS:
                return _finished(login, as_json, live)
    except KeyboardInterrupt:
        if live:
            sys.stderr.write("\r\x1b[K")
        answer = client.request("DELETE", path)
        if answer.status == 200:
            login = answer.body
        elif isinstance(answer.body, dict) and isinstance(answer.body.get("login"), dict):
            login = answer.body["login"]  # it ended first: report how it really ended
            return _finished(login, as_json, live)
        say(f"Cancelled the {login['provider_id']} login.")
        if as_json:
            print(json.dumps(login), flush=True)
        return ExitCode.CANCELLED


def _finished(login: dict[str, Any], as_json: bool, live: bool) -> int:
    if live:
        sys.stderr.write("\r\x1b[K")
    status = login["status"]
    result = login.get("result") or {}
    provider = login["provider_id"]
    if status == "succeeded":
        say(f"✓ Connected {provider}.")
    elif status == "denied":
        detail = result.get("error_description")
        say(f"✗ Access to {provider} was denied" + (f": {detail}" if detail else "."))
    elif status == "failed":
        say(f"✗ The {provider} login failed ({result.get('error')}): {result.get('message')}")
    elif status == "expired":
        say(f"✗ The {provider} login expired before the browser came back.")
    elif status == "cancelled":
        say(f"✗ The {provider} login was cancelled.")
    if as_json:
        print(json.dumps(login), flush=True)
    return EXIT_FOR_STATUS[status]


def _timed_out(login: dict[str, Any], timeout: float | None, as_json: bool, live: bool) -> int:
    if live:
        sys.stderr.write("\r\x1b[K")
    say(
        f"✗ Gave up waiting after {timeout or 0:g}s; the login {login['id']} is still "
        f"{login['status']} (cancel it with 'oauth-bridge cancel {login['id']}')."
    )
    if as_json:
        print(json.dumps(login), flush=True)
    return ExitCode.EXPIRED


def _status_line(login: dict[str, Any], expires: float) -> None:
    left = max(0, int(expires - time.time()))
    doing = (
        "forwarding to the control plane"
        if login["status"] == "forwarding"
        else "waiting for you to finish in the browser"
    )
    sys.stderr.write(
        f"\r\x1b[K{login['provider_id']}: {doing} · {left // 60}:{left % 60:02d} "
        "left · Ctrl-C cancels"
    )
    sys.stderr.flush()


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _clock(rfc3339: str) -> str:
    return datetime.fromtimestamp(_epoch(rfc3339)).strftime("%H:%M:%S")
