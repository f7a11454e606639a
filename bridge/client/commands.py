"""``oauth-bridge status``, ``cancel`` and ``complete``: small calls on the control API."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bridge.client.autostart import running_daemon
from bridge.client.terminal import say
from bridge.client.transport import ControlClient
from bridge.errors import EXIT_FOR_STATUS, BridgeError, DaemonUnavailable, ExitCode, UsageError
from bridge.paths import check_private_dir, default_paths


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


def cancel(args: argparse.Namespace) -> int:
    client = ControlClient(default_paths().control_socket)
    answer = client.request("DELETE", f"/v1/logins/{args.id}")
    if answer.status == 200:
        say(f"Cancelled login {args.id}.")
        return ExitCode.OK
    if answer.status == 503:
        raise DaemonUnavailable(f"{answer.message} (run the same command again)")
    if answer.status == 404:
        raise UsageError(f"no login has the id {args.id!r}")
    if answer.status == 409:
        say(f"oauth-bridge: {answer.message}")
        return ExitCode.FAILED
    raise BridgeError(f"the daemon refused: {answer.message}")


def complete(args: argparse.Namespace) -> int:
    paths = default_paths()
    if not paths.runtime_dir.exists():
        raise DaemonUnavailable(f"no oauth-bridge daemon answers on {paths.control_socket}")
    check_private_dir(paths.runtime_dir)  # the pasted address holds the code
    client = ControlClient(paths.control_socket)
    answer = client.request("POST", "/v1/callbacks", {"url": args.url}, timeout=300)
    if answer.status == 400 or answer.status == 422:
        raise UsageError(answer.message)
    if answer.status == 404:
        raise BridgeError(
            f"{answer.message} It may have expired: start the login again in your tool."
        )
    if answer.status != 200:
        raise BridgeError(f"the daemon refused: {answer.message}")
    login: dict[str, Any] = answer.body
    if args.json:
        print(json.dumps(login))
    result = login.get("result") or {}
    say(
        f"{login['provider_id']} login {login['id']}: {login['status']}"
        + (f" ({result.get('error')}: {result.get('message')})" if result.get("error") else "")
    )
    return EXIT_FOR_STATUS.get(login["status"], ExitCode.FAILED)


__all__ = ["cancel", "complete", "status"]
