"""The aiohttp site for the control channel, whatever the system listens with.

``bridge.platform.listen_control`` gives a bound Unix socket on Linux (served by aiohttp's
own ``SockSite``, as ever) or, on Windows, a named-pipe listener that serves a protocol
factory itself (asyncio's Proactor, each pipe instance owner-only): ``ListenerSite``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web


class ControlListener(Protocol):
    """A listener that serves a protocol factory itself (the Windows control pipe)."""

    address: str

    async def serve(self, protocol_factory: Callable[[], Any]) -> list[Any]: ...

    def close(self) -> None: ...


class ListenerSite(web.BaseSite):
    """Serve a runner's server on a ControlListener (asyncio's pipe servers)."""

    def __init__(self, runner: web.BaseRunner, listener: ControlListener) -> None:
        super().__init__(runner)
        self._listener = listener

    @property
    def name(self) -> str:
        return self._listener.address

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = (await self._listener.serve(server))[0]


def control_site(runner: web.BaseRunner, control: socket.socket | ControlListener) -> web.BaseSite:
    """The site that serves the control API on ``control``."""
    if isinstance(control, socket.socket):
        return web.SockSite(runner, control)
    return ListenerSite(runner, control)
