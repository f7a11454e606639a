"""``oauth-bridge status``, ``stop``, ``cancel``, ``complete`` and ``providers``: small calls."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bridge.client.autostart import running_daemon
from bridge.client.terminal import printable, say
from bridge.errors import BridgeError, DaemonUnavailable, ExitCode, UsageError
from bridge.paths import Paths, check_private_dir, default_paths


def status(args: argparse.Namespace) -> int:
    paths = default_paths()
    status = running_daemon(paths)
    if status is None:
        if args.json:
            print(json.dumps({"running": False, "control_socket": str(paths.control_socket)}))
        say(f"oauth-bridge is not running (nothing answers on {paths.control_socket}).")
        return ExitCode.UNAVAILABLE
    document: dict[str, Any] = {"running": True, **status}
    if args.json:
        print(json.dumps(document))
        return ExitCode.OK
    up = int(document["uptime_seconds"])
    print(
        f"oauth-bridge {document['version']} is running (pid {document['pid']}), "
        f"up {up // 3600}h {up % 3600 // 60}m {up % 60}s"
    )
    print(f"  callbacks:      {document['url']}/callback/<provider>")
    print(f"  control socket: {document['control_socket']}")
    print(f"  control plane:  {document['control_plane_url']}")
    print(f"  credentials:    {describe_credentials(document.get('credentials') or {})}")
    print(f"  log:            {document.get('log', 'stderr')}")
    print(f"  pending logins: {document['pending']}")
    recent = document["recent_logins"]
    if recent:
        print("  recent logins:")
        for login in recent:
            error = (login.get("result") or {}).get("error")
            print(
                f"    {login['id']}  {login['provider_id']:<16} {login['status']:<10} "
                f"{login['created_at']}" + (f"  ({error})" if error else "")
            )
    return ExitCode.OK


def describe_credentials(sources: dict[str, str | None]) -> str:
    """Say where each credential came from, or that the daemon has none (never a value)."""
    named = {"api_key": "API key", "bearer_token": "bearer token", "workspace_id": "workspace"}
    found = [f"{named[k]} from the {v}" for k, v in sources.items() if v and k in named]
    if not (sources.get("api_key") or sources.get("bearer_token")):
        found.append("NO API key or bearer token: LangSmith will refuse every login")
    return ", ".join(found)


def stop(args: argparse.Namespace) -> int:
    """Stop the running daemon as SIGTERM does, and return once it has exited."""
    import os
    import signal
    import time

    from bridge.client.autostart import lock_held
    from bridge.errors import DaemonNotAnswering

    paths = default_paths()
    try:
        status = running_daemon(paths)
    except DaemonNotAnswering as exc:
        return stop_unanswering(paths, exc.pid)
    if status is None:
        say(f"oauth-bridge is not running (nothing answers on {paths.control_socket}).")
        return ExitCode.UNAVAILABLE
    pid = int(status["pid"])
    pending = int(status.get("pending") or 0)
    if pending and not getattr(args, "force", False):
        say(
            f"{pending} login(s) pending: waiting for them to end before stopping, so that "
            "their port is never free for another user to take meanwhile (Ctrl-C leaves "
            "the daemon running; --force stops it now)."
        )
        wait_for_pending(paths)
    elif pending:
        say(
            f"warning: stopping with {pending} login(s) pending: until a daemon runs again, "
            "another user of this computer could take the port and receive their codes."
        )
    os.kill(pid, signal.SIGTERM)
    # It lets forwards in flight finish first (its shutdown grace), then lets go of its lock.
    deadline = time.monotonic() + STOP_DEADLINE_SECONDS
    while lock_held(paths) or not exited(pid):
        if time.monotonic() > deadline:
            raise BridgeError(
                f"the daemon (pid {pid}) did not stop within {STOP_DEADLINE_SECONDS:.0f}s"
            )
        time.sleep(0.02)
    say(f"Stopped oauth-bridge (pid {pid}).")
    return ExitCode.OK


def stop_unanswering(paths: Paths, pid: int) -> int:
    """Stop a daemon that does not answer (hung, or SIGSTOP'd): SIGTERM, then SIGCONT."""
    import os
    import signal
    import time

    from bridge.client.autostart import lock_held

    # A stopped process keeps a SIGTERM pending until it is continued: send both.
    for signum in (signal.SIGTERM, signal.SIGCONT):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            break
    deadline = time.monotonic() + UNANSWERING_GRACE_SECONDS
    while lock_held(paths) or not exited(pid):
        if time.monotonic() > deadline:
            raise BridgeError(
                f"the daemon (pid {pid}) does not answer and did not stop within "
                f"{UNANSWERING_GRACE_SECONDS:.0f}s; 'kill -9 {pid}' ends it"
            )
        time.sleep(0.02)
    say(f"Stopped oauth-bridge (pid {pid}), which was not answering.")
    return ExitCode.OK


# How long a daemon that did not answer gets to stop before we give up on it.
UNANSWERING_GRACE_SECONDS = 10.0


def wait_for_pending(paths: Paths) -> None:
    """Return once no login is pending (each long-polled to its end)."""
    from bridge.client.transport import ControlClient

    client = ControlClient(paths.control_socket)
    while True:
        listed = client.request("GET", "/v1/logins?status=pending", timeout=30)
        logins = listed.body.get("logins", []) if isinstance(listed.body, dict) else []
        if listed.status != 200 or not logins:
            return
        for login in logins:
            client.request("GET", f"/v1/logins/{login['id']}?wait=300", timeout=330)


def exited(pid: int) -> bool:
    """Say whether the process is gone (a zombie nobody reaped yet counts as gone)."""
    from bridge.platform import process_exited  # /proc on Linux, a process handle on Windows

    return process_exited(pid)


# Beyond the daemon's longest shutdown grace (300 s): a stop must not hang forever.
STOP_DEADLINE_SECONDS = 330.0


def cancel(args: argparse.Namespace) -> int:
    from bridge.client.api import Bridge

    cancelled, login = Bridge(start=False).cancel_if_pending(args.id)
    if cancelled:
        say(f"Cancelled login {login.id}.")
        return ExitCode.OK
    say(f"oauth-bridge: the login is {login.status}, so it cannot be cancelled")
    return ExitCode.FAILED


def read_pasted_address(given: str) -> str:
    """Return the address to complete: given, or read from standard input (a prompt on a tty)."""
    if given != "-":
        say(
            "note: the address on the command line is readable by every local user "
            "(/proc/PID/cmdline) until this command ends; run 'oauth-bridge complete' and "
            "paste it instead."
        )
        return given
    if sys.stdin.isatty():
        print("Paste the address the browser ended on, then press Enter:", file=sys.stderr)
    line = sys.stdin.readline().strip()
    if not line:
        raise UsageError("no address was given: paste the address the browser ended on")
    return line


def complete(args: argparse.Namespace) -> int:
    paths = default_paths()
    if not paths.runtime_dir.exists():
        raise DaemonUnavailable(f"no oauth-bridge daemon answers on {paths.control_socket}")
    check_private_dir(paths.runtime_dir)  # the pasted address holds the code
    url = read_pasted_address(args.url)
    from bridge.client.api import Bridge, LoginNotFound
    from bridge.client.waiting import report

    try:
        login = Bridge(start=False).complete(url)
    except LoginNotFound as exc:
        raise BridgeError(
            f"{exc.message} It may have expired: start the login again in your tool."
        ) from None
    return report(login, as_json=args.json)


def providers(args: argparse.Namespace) -> int:
    from bridge.client.api import Bridge

    done = Bridge(start=False).allow_loopback(args.provider, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(done))
    ours = done["redirect_uri"]
    provider = printable(args.provider)
    if not done["changed"]:
        say(f"{provider} already allows {ours} on LangSmith: nothing to do.")
    elif done["dry_run"]:
        say(f"Would add {ours} to {provider}'s allowed redirect URIs on LangSmith (dry run).")
    else:
        say(f"Added {ours} to {provider}'s allowed redirect URIs on LangSmith.")
    say(
        f"The {provider} OAuth app itself (in the provider's developer settings) must list "
        f"{ours} as a callback / redirect URL too."
    )
    return ExitCode.OK


def connections(args: argparse.Namespace) -> int:
    from bridge.client.api import Bridge

    found = Bridge(start=False).connections()
    if args.json:
        print(
            json.dumps(
                {
                    "connections": [
                        {"provider_id": c.provider_id, "name": c.name, "connected": c.connected}
                        for c in found
                    ]
                }
            )
        )
        return ExitCode.OK
    if not found:
        say("LangSmith has no providers set up for your organization.")
    for connection in found:
        mark = "✓ connected    " if connection.connected else "· not connected"
        named = f" ({printable(connection.name)})" if connection.name else ""
        print(f"{mark}  {printable(connection.provider_id)}{named}")
    return ExitCode.OK


def disconnect(args: argparse.Namespace) -> int:
    from bridge.client.api import Bridge

    Bridge(start=False).disconnect(args.provider)
    say(f"Disconnected {printable(args.provider)}: LangSmith holds no token of yours for it now.")
    return ExitCode.OK


__all__ = [
    "cancel",
    "complete",
    "connections",
    "disconnect",
    "providers",
    "status",
    "stop",
]
