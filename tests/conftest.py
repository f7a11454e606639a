"""Fixtures: a control-plane double, an in-process daemon on real sockets, and its files."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.daemon.config import Config, load_config
from bridge.daemon.lifecycle import Daemon, open_listeners
from bridge.daemon.services import Services
from bridge.daemon.systemd import Notifier
from bridge.paths import Paths
from tests.control_plane_double import API_KEY, BEARER, WORKSPACE_ID, ControlPlaneDouble

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """Point every platformdirs look-up at the test's own directory."""
    runtime = tmp_path / "run"
    state = tmp_path / "state"
    return Paths(runtime_dir=runtime, state_dir=state, config_file=tmp_path / "config.toml")


@pytest.fixture
async def control_plane() -> AsyncIterator[ControlPlaneDouble]:
    double = ControlPlaneDouble()
    await double.start()
    yield double
    await double.stop()


def daemon_environ(paths: Paths, control_plane_url: str, **extra: str) -> dict[str, str]:
    """The environment of a daemon or CLI process under test: its own dirs, no real config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_BRIDGE_", "LANGSMITH_"))}
    env.update(
        {
            "OAUTH_BRIDGE_RUNTIME_DIR": str(paths.runtime_dir),
            "OAUTH_BRIDGE_STATE_DIR": str(paths.state_dir),
            "OAUTH_BRIDGE_CONFIG": str(paths.config_file),
            "OAUTH_BRIDGE_CONTROL_PLANE_URL": control_plane_url,
            "OAUTH_BRIDGE_PORT": "0",
            "LANGSMITH_API_KEY": API_KEY,
            "LANGSMITH_WORKSPACE_ID": WORKSPACE_ID,
            "OAUTH_BRIDGE_BEARER_TOKEN": BEARER,
            "OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS": "3",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("NOTIFY_SOCKET", None)
    env.pop("LISTEN_FDS", None)
    env.update(extra)
    return env


def make_config(
    paths: Paths, control_plane_url: str, config_text: str = "", **extra: str
) -> Config:
    paths.config_file.write_text(config_text, encoding="utf-8")
    return load_config(
        config_file=paths.config_file,
        explicit_file=True,
        environ=daemon_environ(paths, control_plane_url, **extra),
    )


@dataclass
class RunningDaemon:
    """An in-process daemon on real sockets, and clients to reach it as tools and browsers do."""

    daemon: Daemon
    paths: Paths
    stop: asyncio.Event
    task: asyncio.Task[None]
    control: aiohttp.ClientSession
    browser: aiohttp.ClientSession
    logs: list[str] = field(default_factory=list)
    # Each login's secret, from its 201 answer: the tests are its creator.
    secrets: dict[str, str] = field(default_factory=dict)

    def remember(self, created: dict[str, Any]) -> dict[str, Any]:
        """Keep a 201 answer's secret, so that ``login`` reads the login as its creator."""
        if "secret" in created:
            self.secrets[created["id"]] = created["secret"]
        return created

    @property
    def services(self) -> Services:
        assert self.daemon.services is not None
        return self.daemon.services

    @property
    def url(self) -> str:
        return self.services.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def register(
        self, provider_id: str = "github", state: str = "state-1", **fields: Any
    ) -> dict[str, Any]:
        async with self.control.post(
            "http://bridge/v1/logins", json={"provider_id": provider_id, "state": state, **fields}
        ) as response:
            assert response.status == 201, await response.text()
            body: dict[str, Any] = await response.json()
            return self.remember(body)

    async def login(
        self, login_id: str, wait: float | None = None, *, as_creator: bool = True
    ) -> dict[str, Any]:
        """GET the login; as its creator (with its secret) unless ``as_creator`` is False."""
        query = "" if wait is None else f"?wait={wait}"
        secret = self.secrets.get(login_id) if as_creator else None
        headers = {} if secret is None else {"X-Login-Secret": secret}
        async with self.control.get(
            f"http://bridge/v1/logins/{login_id}{query}", headers=headers
        ) as response:
            assert response.status == 200
            body: dict[str, Any] = await response.json()
            return body

    async def hit(
        self, query: str, provider_id: str = "github", **kw: Any
    ) -> tuple[int, str, aiohttp.ClientResponse]:
        """Play the browser: GET the callback and follow the redirect to the result page."""
        async with self.browser.get(f"{self.url}/callback/{provider_id}?{query}", **kw) as response:
            return response.status, await response.text(), response


@pytest.fixture
async def start_daemon(paths: Paths, control_plane: ControlPlaneDouble) -> AsyncIterator[Any]:
    started: list[RunningDaemon] = []

    async def start(config_text: str = "", **extra: str) -> RunningDaemon:
        config = make_config(paths, control_plane.url, config_text, **extra)
        paths.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        daemon = Daemon(config=config, paths=paths, notifier=Notifier(None))
        stop = asyncio.Event()
        listeners = open_listeners(config, paths)
        task = asyncio.create_task(daemon.run(listeners, stop=stop, handle_signals=False))
        ready = asyncio.create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        assert ready in done, "daemon did not become ready"
        running = RunningDaemon(
            daemon=daemon,
            paths=paths,
            stop=stop,
            task=task,
            control=aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=str(paths.control_socket))
            ),
            browser=aiohttp.ClientSession(),
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop.set()
        await asyncio.wait_for(running.task, 30)
        await running.control.close()
        await running.browser.close()


@pytest.fixture
async def bridge(start_daemon: Any) -> RunningDaemon:
    """A daemon with default settings, forwarding to the control-plane double."""
    running: RunningDaemon = await start_daemon()
    return running


# -- daemon processes ---------------------------------------------------------


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    paths: Paths
    log: Path

    def info(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.paths.daemon_json.read_text())
        return data

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def wait_for(predicate: Any, *, timeout: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true, up to a deadline: bounded, never a bare sleep."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_process(
    paths: Paths,
    env: dict[str, str],
    *args: str,
    log_name: str = "daemon.out",
    python_args: tuple[str, ...] = (),
) -> DaemonProcess:
    """Start ``python [python_args] -m bridge serve [args]`` with its output in a log file."""
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    if not paths.config_file.exists():
        paths.config_file.write_text("", encoding="utf-8")
    log = paths.runtime_dir.parent / log_name
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *python_args, "-m", "bridge", "serve", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
    return DaemonProcess(process=process, paths=paths, log=log)


def wait_ready(proc: DaemonProcess) -> dict[str, Any]:
    def ready() -> bool:
        if proc.process.poll() is not None:
            raise AssertionError(f"daemon exited {proc.process.returncode}: {proc.log_text()}")
        try:
            return int(proc.info()["pid"]) == proc.process.pid
        except (OSError, ValueError):
            return False

    wait_for(ready, what="daemon.json")
    return proc.info()


@pytest.fixture
def daemon_process(paths: Paths, control_plane: ControlPlaneDouble) -> Iterator[Any]:
    """Start ``oauth-bridge serve`` as a real process; every one is killed at the end."""
    procs: list[DaemonProcess] = []

    def start(*args: str, **extra: str) -> DaemonProcess:
        proc = start_process(paths, daemon_environ(paths, control_plane.url, **extra), *args)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.process.poll() is None:
            proc.process.kill()
        proc.process.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str, package: str) -> str:
    """Find a tool the test drives for real; its absence fails, never skips, the test."""
    import shutil

    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    if found is None:
        pytest.fail(f"{name} is missing: install Debian's package {package} (scripts/test does)")
    return found
