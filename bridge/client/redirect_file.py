"""A private redirect file: how a browser is sent to an address that must stay off command lines.

A command line is readable by every local user (``/proc/PID/cmdline``), the browser's
included. An address that carries a login's state (an authorization URL) is written to
a file only this user can read, in the 0700 runtime dir, and the browser is handed the
file's name instead, as jupyter_server does for its token. The file goes when this
process exits, if a browser has had time to read it, else with the next one's sweep.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
from html import escape
from pathlib import Path

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url={url}">
<title>Opening the sign-in page</title></head>
<body><p>Opening the sign-in page&hellip; <a href="{url}">continue</a>.</p></body></html>
"""


# A browser handed the file may read it a moment after this process is gone (an open
# browser takes it over, xdg-open hands it on): kept that long, then removed.
READ_GRACE_SECONDS = 30.0
# Left by a tool that exited at once (expect --open without --wait): swept this late.
STALE_SECONDS = 600.0


def write_redirect_file(url: str, directory: Path) -> Path:
    """Write a 0600 page that sends the browser on to ``url``; return its path."""
    import tempfile  # here: only a login that hands a browser a file pays for it

    sweep(directory)
    # mkstemp creates the file 0600 and never follows a planted link.
    handle, name = tempfile.mkstemp(prefix="open-", suffix=".html", dir=directory)
    with os.fdopen(handle, "w", encoding="utf-8") as page:
        page.write(PAGE.format(url=escape(url, quote=True)))
    written = time.monotonic()
    atexit.register(remove_if_read, Path(name), written)
    return Path(name)


def remove_if_read(path: Path, written: float) -> None:
    """At exit: remove the file once a browser has had time to read it, else leave it."""
    if time.monotonic() - written >= READ_GRACE_SECONDS:
        remove(path)


def sweep(directory: Path) -> None:
    """Remove redirect files of earlier tools that are past any use."""
    now = time.time()
    for page in directory.glob("open-*.html"):
        with contextlib.suppress(OSError):
            if now - page.lstat().st_mtime > STALE_SECONDS:
                page.unlink()


def remove(path: Path) -> None:
    """Remove a redirect file, if it is still there."""
    with contextlib.suppress(OSError):
        path.unlink()
