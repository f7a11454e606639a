"""``oauth-bridge expect``: register a login for a state the tool got, open the URL, wait."""

from __future__ import annotations

import argparse
import json
from urllib.parse import quote

from bridge.client.api import Bridge, state_from_auth_url
from bridge.client.preflight import warn_of_other_settings, warn_without_credentials
from bridge.client.terminal import say
from bridge.client.wait_arguments import check_wait_arguments
from bridge.client.waiting import read_secret_argument, tell_where_to_sign_in, wait_and_report
from bridge.errors import ExitCode, UsageError


def run_expect(args: argparse.Namespace) -> int:
    if args.open and not args.auth_url:
        raise UsageError("--open needs --auth-url: with --state alone there is nothing to open")
    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout bounds --wait; add --wait")
    check_wait_arguments(args)
    state = read_secret_argument(args.state, "--state")
    auth_url = read_secret_argument(args.auth_url, "--auth-url")
    if auth_url is not None:
        _, redirect_uri = state_from_auth_url(auth_url)  # a bad URL fails before any start

    bridge = Bridge(start=not args.no_start, client_name=args.client_name)
    warn_of_other_settings(bridge)
    warn_without_credentials(bridge)
    if auth_url is not None and redirect_uri is None:
        say(
            "note: the authorization URL has no redirect_uri, so it cannot be checked; "
            f"the provider must redirect to {bridge.url}/callback/{quote(args.provider, safe='')}"
        )
    if auth_url is not None:
        login = bridge.expect(
            args.provider, auth_url=auth_url, ttl_seconds=args.ttl, issuer=args.issuer
        )
    else:
        assert state is not None  # argparse requires one of the two
        login = bridge.expect(args.provider, state=state, ttl_seconds=args.ttl, issuer=args.issuer)
    if not args.json or not args.wait:
        say(
            f"Expecting the {args.provider} redirect at {login.redirect_uri} "
            f"(login {login.id}, for {args.ttl // 60}m{args.ttl % 60:02d}s)."
        )
    if args.open and auth_url is not None:
        # The URL carries the state: shown only where no browser can take it.
        tell_where_to_sign_in(
            auth_url,
            daemon_url=bridge.url,
            open_it=True,
            opener=bridge.open_in_browser,
            print_first=False,
        )
    if not args.wait:
        print(json.dumps(login.to_json()) if args.json else login.id, flush=True)
        return ExitCode.OK
    return wait_and_report(bridge, login, timeout=args.timeout, as_json=args.json)
