"""The Python API for desktop tools, and what else runs in a tool's process.

    from bridge.client import Bridge

    login = Bridge().login("github", scopes=["repo"], open_browser=True).wait()
    print(login.status, login.token)

Standard library only, for a fast start: nothing here imports aiohttp, pydantic, yarl
or multidict (``tests/test_layout.py`` holds that line). The names below load on first
use, so that the CLI's own modules in this package pay only for what they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError, ControlPlaneRefused, DaemonUnavailable, UsageError

if TYPE_CHECKING:
    from bridge.client.api import AsyncBridge, AsyncLogin, Bridge, Login

__all__ = [
    "AsyncBridge",
    "AsyncLogin",
    "Bridge",
    "BridgeError",
    "ControlPlaneRefused",
    "DaemonUnavailable",
    "Login",
    "UsageError",
]

_FROM_API = ("AsyncBridge", "AsyncLogin", "Bridge", "Login")


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from bridge.client import api

        return getattr(api, name)
    raise AttributeError(f"module 'bridge.client' has no attribute {name!r}")
