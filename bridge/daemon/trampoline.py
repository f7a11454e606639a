"""The trampoline: a one-time address of ours that sends the browser on to the provider.

A tool opens ``http://127.0.0.1:PORT/go/{token}`` instead of the authorization URL,
so that no command line (the browser's included, which every local user can read in
``/proc/PID/cmdline``) carries the state. Opening it proves that the browser reaches
this daemon: the login's ``browser_seen`` turns true, which is how ``--callback auto``
checks its guess. The authorization URL is a secret: it is kept in memory only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Jump:
    """Where one trampoline address sends the browser, and for which login."""

    login_id: str
    auth_url: str


class Trampolines:
    """One-time addresses, each good for one jump to its login's authorization URL."""

    def __init__(self, limit: int) -> None:
        # Bounded like the pending logins they serve: the oldest goes first.
        self.limit = max(1, limit)
        self._jumps: dict[str, Jump] = {}

    def issue(self, login_id: str, auth_url: str) -> str:
        """Return a fresh token for ``login_id``'s authorization URL."""
        while len(self._jumps) >= self.limit:
            self._jumps.pop(next(iter(self._jumps)))
        token = secrets.token_urlsafe(24)
        self._jumps[token] = Jump(login_id, auth_url)
        return token

    def peek(self, token: str) -> Jump | None:
        """Return where ``token`` leads without spending it (for a prefetch)."""
        return self._jumps.get(token)

    def take(self, token: str) -> Jump | None:
        """Spend ``token``: its jump the first time, None ever after (or if never issued)."""
        return self._jumps.pop(token, None)

    def forget(self, login_id: str) -> None:
        """Drop every address of a login that ended: its URL is of no use any more."""
        for token in [t for t, jump in self._jumps.items() if jump.login_id == login_id]:
            del self._jumps[token]

    def __len__(self) -> int:
        return len(self._jumps)
