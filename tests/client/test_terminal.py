"""What a tool prints of outside text: every character that could steer a terminal is shown."""

from __future__ import annotations

import pytest

from bridge.client.terminal import printable

# Bidi embeddings and overrides, isolates, marks, line and paragraph separators: a
# provider's error_description with U+202E shows "gpj.exe" as "exe.jpg", and U+2028 is a
# line break to some terminals. C1 controls: U+009B is a CSI on terminals that take 8 bits.
STEERING = [
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    "\u200e",
    "\u200f",
    "\u061c",
    "\u2028",
    "\u2029",
    *(chr(c) for c in range(0x80, 0xA0)),
]


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("character", STEERING, ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_controls_separators_and_c1_are_shown_as_escapes(character: str, lines: bool) -> None:
    shown = printable(f"before{character}after", lines=lines)

    escape = f"\\x{ord(character):02x}" if ord(character) < 0x100 else f"\\u{ord(character):04x}"
    assert shown == f"before{escape}after"


def test_text_that_steers_nothing_is_kept_as_it_is() -> None:
    text = "Ünïcödé, 日本語, emoji 👩‍💻 and a zero-width joiner stay"

    assert printable(text) == text
    assert printable("two\nlines", lines=True) == "two\nlines"
    assert printable("two\nlines") == "two\\nlines"
