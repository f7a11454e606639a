"""What a tool's command says to people: on stderr, with every outside text made harmless."""

from __future__ import annotations

import re
import sys

# C0 and C1 controls and DEL: an ESC or a CSI from a provider's error_description, a
# control plane's message or a squatter's Server header could retitle the terminal,
# clear it or plant a hyperlink. Newlines are escaped too: one message, one line.
# Bidi embeddings, overrides, isolates and marks (U+202A..U+202E, U+2066..U+2069, U+200E,
# U+200F, U+061C) reorder what follows them ("gpj.exe" shown as "exe.jpg"), and the line
# and paragraph separators (U+2028, U+2029) break a line on some terminals.
_STEERING = r"\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(rf"[\x00-\x1f\x7f-\x9f{_STEERING}]")


# The same, but a message of several lines keeps its line breaks.
_CONTROL_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f\x7f-\x9f{_STEERING}]")


def printable(text: object, *, lines: bool = False) -> str:
    """Return ``text`` with every control character shown as an escape, never executed.

    ``lines=True`` keeps line breaks, for a message of ours with several lines.
    """
    pattern = _CONTROL_BUT_NEWLINE if lines else _CONTROL
    return pattern.sub(lambda m: repr(m.group())[1:-1], str(text))


def say(message: str) -> None:
    """Write a line for people: stderr, so stdout stays for --json."""
    print(message, file=sys.stderr, flush=True)
