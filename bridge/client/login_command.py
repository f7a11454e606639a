"""``oauth-bridge login``: the whole login in one command, the daemon starting the flow."""

from __future__ import annotations

import argparse
import os
import threading

from bridge.client.api import Bridge, Login, default_callback
from bridge.client.preflight import warn_of_other_settings, warn_without_credentials
from bridge.client.reach import decide
from bridge.client.terminal import say
from bridge.client.wait_arguments import check_wait_arguments
from bridge.client.waiting import (
    cancel_and_report,
    cancelling_signals,
    report,
    tell_where_to_sign_in,
    wait_and_report,
)

CONTACTING_AFTER = 1.0


def start(bridge: Bridge, args: argparse.Namespace) -> Login:
    """Have the daemon start the login; the browser is opened once the address is printed."""
    return bridge.login(
        args.provider,
        list(args.scope),
        user_id=args.user_id,
        agent_id=args.agent_id,
        force_new=args.force_new,
        ttl_seconds=args.ttl,
        callback=args.callback,
        reach_timeout=args.reach_timeout,
        open_browser=False,  # it must be on the terminal first
    )


def run_login(args: argparse.Namespace) -> int:
    check_wait_arguments(args)
    bridge = Bridge(start=not args.no_start, client_name=args.client_name)
    warn_of_other_settings(bridge)
    warn_without_credentials(bridge)
    # LangSmith's answer usually comes in well under a second: say what takes longer.
    contacting = threading.Timer(CONTACTING_AFTER, say, ("Contacting LangSmith...",))
    contacting.daemon = True
    contacting.start()
    try:
        login = start(bridge, args)
    finally:
        contacting.cancel()
    if login.terminal:  # already connected: no browser needed
        return report(login, as_json=args.json)
    assert login.open_url is not None
    hosted = login.callback == "hosted"
    verdict = decide(os.environ)
    chosen_by_rule = args.callback in (None, "auto") and default_callback(bridge.paths) in (
        None,
        "auto",
    )
    if hosted and chosen_by_rule:
        say(f"Using LangSmith's own sign-in page: {verdict.why}.")
    try:
        with cancelling_signals():
            opened = tell_where_to_sign_in(
                login.open_url,
                daemon_url=bridge.url,
                open_it=not args.no_open,
                opener=bridge.open_in_browser,
                hosted=hosted,
                client_name=args.client_name,
            )
    except KeyboardInterrupt:  # registered already: it must not stay pending behind us
        return cancel_and_report(bridge, login, as_json=args.json)
    if not args.no_open:
        login = bridge.arm_reach(login, browser_opened=opened)
    return wait_and_report(
        bridge,
        login,
        timeout=args.timeout,
        as_json=args.json,
        remote=verdict.environment in ("ssh", "container", "headless", "codespace"),
    )
