"""Open a URL in the user's browser without blocking, and say truthfully whether one was started.

Where a browser can open at all is ``reach.decide``'s call (one rule for ``login``,
``doctor`` and this module). How to open it here is ``launches``, a pure plan; running
it starts each command detached and watches it only briefly: ``webbrowser.open`` and a
``$BROWSER`` that stays in the foreground block until the browser exits, 20 s and more.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.client.reach import Verdict, decide

# How long started commands may take to fail before one counts as opened: a command
# still running then is a browser that has started (and may run for hours).
CHECK_SECONDS = 1.5
# Each command gets at least this long, so a slow first one leaves the next a chance.
LEAST_CHECK_SECONDS = 0.1
POLL_SECONDS = 0.02  # the async twin's poll of a started command


@dataclass(frozen=True, slots=True)
class Launch:
    """One command that opens the browser, and the exit codes that mean it did."""

    argv: tuple[str, ...]
    ok_codes: frozenset[int] = frozenset({0})


def launches(url: str, environ: Mapping[str, str], verdict: Verdict) -> list[Launch]:
    """List the commands to try, in order, to open ``url`` where ``verdict`` was reached."""
    if not verdict.can_open_browser:
        return []  # e.g. no screen: a text browser would take over this terminal
    command = environ.get("BROWSER", "")
    if command.strip():
        return browser_variable(command, url)  # the user's own choice comes first
    if verdict.environment == "wsl":
        return [
            Launch(("wslview", url)),
            # explorer.exe exits 1 when it did open the URL: only a failure to run counts.
            Launch(("explorer.exe", url), frozenset({0, 1})),
        ]
    if verdict.environment == "macos":
        return [Launch(("open", url))]
    if verdict.environment == "windows":
        # What Go's and gh's browser packages run: no shell, so '&' in a URL stays whole.
        return [Launch(("rundll32", "url.dll,FileProtocolHandler", url))]
    return [
        Launch(("xdg-open", url)),
        Launch(("gio", "open", url)),
        Launch(("x-www-browser", url)),  # Debian's graphical choice, never a text one
    ]


def browser_variable(value: str, url: str) -> list[Launch]:
    """Read ``$BROWSER`` as ``webbrowser`` does: commands split by ``os.pathsep``, ``%s`` the URL."""
    found = []
    for entry in value.split(os.pathsep):
        try:
            words = shlex.split(entry)
        except ValueError:
            continue  # an unbalanced quote: not a command we can run
        if not words:
            continue
        if any("%s" in word for word in words):
            words = [word.replace("%s", url) for word in words]
        else:
            words.append(url)
        found.append(Launch(tuple(words)))
    return found


def open_url(url: str) -> bool:
    """Open ``url`` in a browser; True only when one was started (within ~2 s at most)."""
    deadline = time.monotonic() + CHECK_SECONDS
    for launch in launches(url, os.environ, decide(os.environ)):
        process = _start(launch)
        if process is None:
            continue
        try:
            code = process.wait(timeout=_left(deadline))
        except subprocess.TimeoutExpired:
            _reap_later(process)
            return True
        if code in launch.ok_codes:
            return True
    return False


async def open_url_async(url: str) -> bool:
    """Open ``url`` as ``open_url`` does, without blocking the event loop while it waits."""
    import asyncio  # here: a blocking tool (the CLI) should not pay 30 ms for asyncio

    deadline = time.monotonic() + CHECK_SECONDS
    for launch in launches(url, os.environ, decide(os.environ)):
        process = _start(launch)
        if process is None:
            continue
        own_deadline = time.monotonic() + _left(deadline)
        # A bounded poll: a child's exit is no awaitable without a thread or a watcher.
        while (code := process.poll()) is None and time.monotonic() < own_deadline:  # noqa: ASYNC110 - see above
            await asyncio.sleep(POLL_SECONDS)
        if code is None:
            _reap_later(process)
            return True
        if code in launch.ok_codes:
            return True
    return False


def _start(launch: Launch) -> subprocess.Popen[bytes] | None:
    try:
        # Its own session and no terminal: a browser neither reads our keystrokes, nor
        # writes over our output, nor dies with our Ctrl-C.
        return subprocess.Popen(
            launch.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,
        )
    except OSError:
        return None  # not installed here, or not runnable


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), LEAST_CHECK_SECONDS)


def _reap_later(process: subprocess.Popen[bytes]) -> None:
    """Collect a browser that outlives the check when it exits: no zombie, no warning."""
    threading.Thread(target=process.wait, name="browser-reaper", daemon=True).start()
