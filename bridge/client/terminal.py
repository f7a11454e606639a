"""What a tool's command says to people: on stderr, with every outside text made harmless."""

from __future__ import annotations

import re
import sys

# C0 and C1 controls and DEL: an ESC or a CSI from a provider's error_description, a
# control plane's message or a squatter's Server header could retitle the terminal,
# clear it or plant a hyperlink. Newlines are escaped too: one message, one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# The same, but a message of several lines keeps its line breaks.
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def printable(text: object, *, lines: bool = False) -> str:
    """Return ``text`` with every control character shown as an escape, never executed.

    ``lines=True`` keeps line breaks, for a message of ours with several lines.
    """
    pattern = _CONTROL_BUT_NEWLINE if lines else _CONTROL
    return pattern.sub(lambda m: repr(m.group())[1:-1], str(text))


def say(message: str) -> None:
    """Write a line for people: stderr, so stdout stays for --json."""
    print(message, file=sys.stderr, flush=True)
