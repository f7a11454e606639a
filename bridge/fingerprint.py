"""A credential's fingerprint: enough to tell two keys apart, nothing to recover one from."""

from __future__ import annotations

import hashlib

# A label, so that this digest matches no other use of a plain SHA-256 of the key.
_LABEL = b"oauth-bridge credential fingerprint\0"


def fingerprint(secret: str) -> str:
    """Return 12 hex digits of a labelled SHA-256 of ``secret``."""
    return hashlib.sha256(_LABEL + secret.encode()).hexdigest()[:12]
