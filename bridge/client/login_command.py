"""``oauth-bridge login``: the whole login in one command, the daemon starting the flow."""

from __future__ import annotations

import argparse

from bridge.client.api import Bridge
from bridge.client.expect import check_wait_arguments
from bridge.client.preflight import warn_of_other_settings, warn_without_credentials
from bridge.client.waiting import report, tell_where_to_sign_in, wait_and_report


def run_login(args: argparse.Namespace) -> int:
    check_wait_arguments(args)
    bridge = Bridge(start=not args.no_start, client_name=args.client_name)
    warn_of_other_settings(bridge)
    warn_without_credentials(bridge)
    login = bridge.login(
        args.provider,
        list(args.scope),
        user_id=args.user_id,
        agent_id=args.agent_id,
        force_new=args.force_new,
        ttl_seconds=args.ttl,
        callback=args.callback,
    )
    if login.terminal:  # already connected: no browser needed
        return report(login, as_json=args.json)
    assert login.open_url is not None
    tell_where_to_sign_in(
        login.open_url,
        daemon_url=bridge.url,
        open_it=not args.no_open,
        opener=bridge.open_in_browser,
    )
    return wait_and_report(bridge, login, timeout=args.timeout, as_json=args.json)
