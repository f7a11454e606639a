"""Waiting for a login at the terminal: the live status line, Ctrl-C, and how it ended.

Shared by ``expect --wait`` and ``login``. SIGTERM and SIGHUP (what a parent's
``terminate()`` or ``child.kill()`` and a closed terminal send) cancel the login like
Ctrl-C does, so that it never stays pending for its whole TTL behind a dead tool.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from bridge.client.api import Bridge, Login
from bridge.client.flow import Waited, epoch_of
from bridge.client.terminal import printable, say
from bridge.errors import EXIT_FOR_STATUS, BridgeError, ExitCode
from bridge.platform import CANCEL_SIGNALS

# The long-poll's slice while a live status line is shown (it ticks once a second).
TICK_SECONDS = 1.0
CLEAR_LINE = "\r\x1b[K"


@contextlib.contextmanager
def cancelling_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt for the block, then restore them."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {}
    for signum in CANCEL_SIGNALS:  # SIGTERM and SIGHUP on Linux
        with contextlib.suppress(ValueError):  # not the main thread: leave them be
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_and_report(
    bridge: Bridge,
    login: Login,
    *,
    timeout: float | None,
    as_json: bool,
    remote: bool = False,
) -> int:
    """Wait for the login's outcome, say it, and return the contract's exit code.

    On a terminal, an address pasted here is completed as ``oauth-bridge complete``
    would (the browser ran where its redirect to 127.0.0.1 could not arrive).
    ``remote`` says that the live line should tell so (an SSH session, say).
    """
    live = sys.stderr.isatty()
    ends = epoch_of(login.expires_at)
    if timeout is not None:
        ends = min(ends, time.time() + timeout)
    current = login
    if sys.stdin is not None and sys.stdin.isatty():
        take_pasted_addresses(bridge)

    def show(shown: dict[str, Any]) -> None:
        left = max(0, int(ends - time.time()))
        provider = printable(shown["provider_id"])
        if shown["status"] == "forwarding":
            doing = "forwarding to LangSmith"
        elif shown.get("callback") == "hosted":
            doing = "finish in LangSmith's page (a denial there is not reported back)"
        elif remote:
            doing = "waiting for the browser (or paste the address it ended on here)"
        else:
            doing = "waiting for you to finish in the browser"
        sys.stderr.write(
            f"{CLEAR_LINE}{provider}: {doing} · {left // 60}:{left % 60:02d} left · Ctrl-C cancels"
        )
        sys.stderr.flush()

    def replaced(waited: Waited) -> None:
        nonlocal current, ends
        current = replace(
            current,
            id=waited.login["id"],
            secret=waited.secret,
            callback="hosted",
            expires_at=waited.login["expires_at"],
        )
        ends = epoch_of(current.expires_at)
        if timeout is not None:
            ends = min(ends, time.time() + timeout)
        if live:
            sys.stderr.write(CLEAR_LINE)
        say(
            "No browser reached oauth-bridge on this machine within "
            f"{login.reach.seconds if login.reach else 0:g}s (it may run on another "
            "machine, or a forward moved the port), so the login goes through LangSmith's "
            "own page instead, which works from a browser anywhere:"
        )
        show_address(waited.open_url or "", client_name=bridge.client_name, hosted=True)
        if waited.browser_opened:
            say("Opened it in the browser.")
        say(HOSTED_NOTE)

    try:
        with cancelling_signals():
            final = bridge.wait(
                login,
                timeout=timeout,
                tick=TICK_SECONDS if live else None,
                on_progress=show if live else None,
                on_replaced=replaced,
                cancel_on_interrupt=False,  # cancelled below, and said so
            )
    except KeyboardInterrupt:
        if live:
            sys.stderr.write(CLEAR_LINE)
        return cancel_and_report(bridge, current, as_json=as_json)
    if live:
        sys.stderr.write(CLEAR_LINE)
    if not final.terminal:
        say(
            f"✗ Gave up waiting after {timeout or 0:g}s; the login {final.id} is still "
            f"{final.status} (cancel it with 'oauth-bridge cancel {final.id}')."
        )
        if as_json:
            print(json.dumps(final.to_json()), flush=True)
        return ExitCode.EXPIRED
    return report(final, as_json=as_json)


def cancel_and_report(bridge: Bridge, login: Login, *, as_json: bool) -> int:
    """Cancel a login the user gave up on (Ctrl-C), or say how it ended if it got there first."""
    cancelled, final = bridge.cancel_if_pending(login)
    if not cancelled and not final.terminal:
        # Forwarding: the code is on its way and cannot be called back. The daemon
        # bounds the forward, so wait for how it ends, then say it.
        say("The sign-in is already being finished; waiting for its outcome.")
        final = bridge.wait(final)
    if not cancelled:
        return report(final, as_json=as_json)  # it ended first: say how it really ended
    say(f"Cancelled the {printable(login.provider_id)} login.")
    if as_json:
        print(json.dumps(final.to_json()), flush=True)
    return ExitCode.CANCELLED


HOSTED_NOTE = (
    "LangSmith's page shows how it ended. It does not report a denial back here: if it "
    "says 'Not connected', press Ctrl-C to end this wait."
)


def take_pasted_addresses(bridge: Bridge) -> None:
    """Complete any callback address pasted on this terminal while the wait goes on."""
    import threading

    def read() -> None:
        for line in sys.stdin:
            address = line.strip()
            if not address:
                continue
            if not address.startswith(("http://", "https://")):
                say("(that is not an address: paste the whole address the browser ended on)")
                continue
            try:
                bridge.complete(address)
            except BridgeError as exc:
                say(f"oauth-bridge: {printable(exc.message)}")

    # A daemon thread: a blocked read of the terminal must never keep the command alive.
    threading.Thread(target=read, name="paste", daemon=True).start()


def show_address(url: str, *, client_name: str | None, hosted: bool) -> None:
    """Print the sign-in address on a line of its own (a hyperlink where the terminal takes one)."""
    import platform

    shown = printable(url)
    if sys.stderr.isatty() and os.environ.get("TERM", "dumb") != "dumb":
        # OSC 8: the whole address is one link, however the terminal wraps it.
        shown = f"\x1b]8;;{shown}\x1b\\{shown}\x1b]8;;\x1b\\"
    if hosted:
        tool = f" for {printable(client_name)}" if client_name else ""
        say(
            f"Sign in{tool} on {printable(platform.node() or 'this machine')}: open this in "
            f"any browser, on any device:\n\n{shown}\n"
        )
    else:
        say(f"Sign in at:\n\n{shown}\n")


def report(login: Login, *, as_json: bool) -> int:
    """Say how a login ended (on stderr; the login object on stdout with --json)."""
    from bridge.client.settings import tool_settings

    result = login.result or {}
    # As the browser's pages name it: its configured display name ("GitHub"), else its id.
    provider = printable(tool_settings(login.bridge.paths).provider_name(login.provider_id))
    if login.status == "succeeded":
        if result.get("already_connected"):
            say(f"✓ {provider} was already connected.")
        else:
            say(f"✓ Connected to {provider}.")
    elif login.status == "denied":
        detail = result.get("error_description")
        say(f"✗ Access to {provider} was denied" + (f": {printable(detail)}" if detail else "."))
    elif login.status == "failed":
        say(
            f"✗ The {provider} login failed ({printable(result.get('error'))}): "
            f"{printable(result.get('message'))}"
        )
        detail = result.get("detail")
        if detail is not None:
            say(f"  LangSmith said: {printable(json.dumps(detail))}")
    elif login.status == "expired":
        say(f"✗ The {provider} login expired before the browser came back.")
    elif login.status == "cancelled":
        say(f"✗ The {provider} login was cancelled.")
    else:
        say(
            f"✗ The {provider} login is still {printable(login.status)}: its outcome is not "
            f"known yet ('oauth-bridge status' shows it later)."
        )
    if as_json:
        print(json.dumps(login.to_json()), flush=True)
    return EXIT_FOR_STATUS.get(login.status, ExitCode.EXPIRED)


def tell_where_to_sign_in(
    url: str,
    *,
    daemon_url: str,
    open_it: bool,
    opener: Callable[[str], bool],
    print_first: bool = True,
    hosted: bool = False,
    client_name: str | None = None,
) -> bool:
    """Print the address (first, or only where no browser opens), then open it with ``opener``.

    Return whether a browser was launched.
    """
    if print_first or not open_it:
        show_address(url, client_name=client_name, hosted=hosted)
    if hosted:
        opened = open_it and opener(url)
        if opened:
            say("Opened the browser; sign in there.")
        say(HOSTED_NOTE)
        return opened
    if not open_it:
        return False
    if opener(url):
        say("Opened the browser; sign in there.")
        return True
    if not print_first:
        show_address(url, client_name=client_name, hosted=hosted)
    say(
        "Could not open a browser here: open the address above in one. If that browser runs "
        f"on another machine, its redirect to {daemon_url} fails there; copy the address it "
        "ends on (starting with http://127.0.0.1...) and run here:\n\n"
        "  oauth-bridge complete -\n\n"
        "then paste it (it is read from standard input, so it never shows in a process list)"
        + (", or paste it right here." if sys.stdin is not None and sys.stdin.isatty() else ".")
    )
    return False


def read_secret_argument(value: str | None, what: str) -> str | None:
    """Resolve ``-`` to the first line of standard input; warn when a secret came as is."""
    if value is None:
        return None
    if value == "-":
        line = sys.stdin.readline().strip()
        if not line:
            from bridge.errors import UsageError

            raise UsageError(
                f"{what} '-' reads standard input, which had nothing on its first line"
            )
        return line
    say(
        f"note: {what} on the command line is readable by every local user "
        f"(/proc/PID/cmdline); pass '{what} -' and write it to standard input instead."
    )
    return value
