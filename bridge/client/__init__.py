"""The Python API for desktop tools, and what else runs in a tool's process.

    from bridge.client import Bridge

    login = Bridge().login("github", scopes=["repo"], open_browser=True).wait()
    print(login.status, login.token)

Standard library only, for a fast start: nothing here imports aiohttp, pydantic, yarl
or multidict (``tests/test_layout.py`` holds that line). The names below load on first
use, so that the CLI's own modules in this package pay only for what they use.

Every error a call here raises derives from ``BridgeError`` and is importable from here
(``tests/client/test_errors_exported.py`` walks the raise statements to hold that):

    BridgeError
    ├── UsageError: ConfigError, UnsafeDir (also named UnsafeRuntimeDir), LoginNotFound,
    │               UnsupportedPlatform
    ├── DaemonUnavailable: DaemonNotRunning, DaemonNotAnswering, PortTaken
    └── ControlPlaneRefused
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.errors import (
    BridgeError,
    ConfigError,
    ControlPlaneRefused,
    DaemonNotAnswering,
    DaemonNotRunning,
    DaemonUnavailable,
    UnsafeDir,
    UnsafeRuntimeDir,
    UsageError,
)

if TYPE_CHECKING:
    from bridge.client.api import (
        AsyncBridge,
        AsyncLogin,
        Bridge,
        Login,
        LoginNotFound,
        PortTaken,
    )
    from bridge.platform import UnsupportedPlatform

__all__ = [
    "AsyncBridge",
    "AsyncLogin",
    "Bridge",
    "BridgeError",
    "ConfigError",
    "ControlPlaneRefused",
    "DaemonNotAnswering",
    "DaemonNotRunning",
    "DaemonUnavailable",
    "Login",
    "LoginNotFound",
    "PortTaken",
    "UnsafeDir",
    "UnsafeRuntimeDir",
    "UnsupportedPlatform",
    "UsageError",
]

# Defined in bridge.client.api, which loads on first use of one of them.
_FROM_API = ("AsyncBridge", "AsyncLogin", "Bridge", "Login", "LoginNotFound", "PortTaken")


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        from bridge.client import api

        return getattr(api, name)
    if name == "UnsupportedPlatform":
        # Raised as bridge.platform loads, where oauth-bridge has no port for the system.
        from bridge.platform import UnsupportedPlatform

        return UnsupportedPlatform
    raise AttributeError(f"module 'bridge.client' has no attribute {name!r}")
