"""aiohttp's default TLS context, with its CA certificates read when TLS is first used.

aiohttp builds two TLS contexts when it is imported, and reading the system's CA bundle
into each took about 20 ms here (OpenSSL 3 parses every certificate in it), on the way
to the daemon's readiness while a cold ``login`` waits. ``serve`` imports aiohttp within
``deferred_ca_loading``: the context that verifies gets its certificates read by
``load_deferred`` before the first request that may use TLS (the control plane's calls
await it); the one that verifies nothing (``ssl=False``, which the daemon never passes)
has no use for them. A context that was not given its certificates fails closed: its
handshakes fail verification.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_read_ca_paths = ssl.SSLContext.set_default_verify_paths
_pending: list[ssl.SSLContext] = []
_lock = threading.Lock()


def _defer(context: ssl.SSLContext) -> None:
    if context.verify_mode != ssl.CERT_NONE:
        _pending.append(context)


@contextmanager
def deferred_ca_loading() -> Iterator[None]:
    """Import aiohttp within this: its contexts' CA paths are read later, when needed.

    Only for an import of aiohttp's connector that has not happened yet in this process
    (a test's, a library caller's stays as aiohttp made it); single-threaded, at start.
    """
    if "aiohttp.connector" in sys.modules:
        yield
        return
    ssl.SSLContext.set_default_verify_paths = _defer  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ssl.SSLContext.set_default_verify_paths = _read_ca_paths  # type: ignore[method-assign]


def pending() -> bool:
    """Say whether a context still waits for its CA certificates."""
    return bool(_pending)


def load_deferred() -> None:
    """Read the CA paths of every context that waits for them (blocking: call in a thread)."""
    with _lock:
        while _pending:
            _read_ca_paths(_pending.pop())
