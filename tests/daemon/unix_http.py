"""HTTP over the control socket for the third-party tools: a requests adapter, a live daemon.

Schemathesis calls an API through a ``requests`` session and runs its checks in plain
(synchronous) test functions, so the daemon it talks to runs in a thread of its own,
with the control-plane double beside it on the same loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

from bridge.daemon.lifecycle import Daemon, open_listeners
from bridge.daemon.systemd import Notifier
from bridge.paths import Paths
from tests.conftest import make_config
from tests.control_plane_double import ControlPlaneDouble


class UnixConnection(HTTPConnection):
    """urllib3's connection, to a Unix socket instead of host and port."""

    def __init__(self, *args: Any, socket_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_path = socket_path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout if isinstance(self.timeout, int | float) else None)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        return sock


class UnixPool(HTTPConnectionPool):
    ConnectionCls = UnixConnection


class UnixAdapter(HTTPAdapter):
    """Send every request a session mounts this on to ``socket_path``, whatever its host."""

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.pool = UnixPool("bridge", socket_path=socket_path)

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> HTTPConnectionPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
        super().close()


def unix_session(socket_path: str) -> requests.Session:
    """A requests session whose http://bridge/... requests go to the control socket."""
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the socket is the address
    session.mount("http://bridge", UnixAdapter(socket_path))
    return session


@dataclass
class LiveDaemon:
    """A daemon and its control-plane double, served by a loop in another thread."""

    paths: Paths
    url: str
    control_plane: ControlPlaneDouble
    loop: asyncio.AbstractEventLoop

    @property
    def socket_path(self) -> str:
        return str(self.paths.control_socket)


@contextmanager
def live_daemon(paths: Paths, **extra: str) -> Iterator[LiveDaemon]:
    """Run a daemon (with default settings but ``extra``) in a thread until the block ends."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        double = ControlPlaneDouble()
        await double.start()
        try:
            config = make_config(paths, double.url, **extra)
            paths.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            daemon = Daemon(config=config, paths=paths, notifier=Notifier(None))
            stop = asyncio.Event()
            task = asyncio.create_task(
                daemon.run(open_listeners(config, paths), stop=stop, handle_signals=False)
            )
            await asyncio.wait(
                {task, asyncio.create_task(daemon.ready.wait())},
                timeout=10,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if task.done():
                task.result()
            assert daemon.services is not None, "the daemon did not become ready"
            box.update(stop=stop, double=double, url=daemon.services.url)
            started.set()
            await task
        finally:
            await double.stop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # handed to the test, which fails with it
            box["error"] = exc
        finally:
            started.set()
            loop.close()

    thread = threading.Thread(target=run, name="live-daemon", daemon=True)
    thread.start()
    started.wait(15)
    if "error" in box or "url" not in box:
        thread.join(5)
        raise AssertionError(f"the daemon did not start: {box.get('error')!r}")
    try:
        yield LiveDaemon(paths=paths, url=box["url"], control_plane=box["double"], loop=loop)
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        if "error" in box:
            raise AssertionError(f"the daemon failed: {box['error']!r}")
