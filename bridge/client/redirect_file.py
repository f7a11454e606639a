"""A private redirect file: how a browser is sent to an address that must stay off command lines.

A command line is readable by every local user (``/proc/PID/cmdline``), the browser's
included. An address that carries a login's state (an authorization URL) is written to
a file only this user can read, in the 0700 runtime dir, and the browser is handed the
file's name instead, as jupyter_server does for its token. The file goes when this
process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from html import escape
from pathlib import Path

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="0;url={url}">
<title>Opening the sign-in page</title></head>
<body><p>Opening the sign-in page&hellip; <a href="{url}">continue</a>.</p></body></html>
"""


def write_redirect_file(url: str, directory: Path) -> Path:
    """Write a 0600 page that sends the browser on to ``url``; return its path."""
    import tempfile  # here: only a login that hands a browser a file pays for it

    # mkstemp creates the file 0600 and never follows a planted link.
    handle, name = tempfile.mkstemp(prefix="open-", suffix=".html", dir=directory)
    with os.fdopen(handle, "w", encoding="utf-8") as page:
        page.write(PAGE.format(url=escape(url, quote=True)))
    atexit.register(remove, Path(name))
    return Path(name)


def remove(path: Path) -> None:
    """Remove a redirect file, if it is still there."""
    with contextlib.suppress(OSError):
        path.unlink()
