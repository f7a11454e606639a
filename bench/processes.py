"""Servers under measurement: the daemon or a floor server, each in its own private temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.paths import Paths, read_daemon_json

REPO = Path(__file__).resolve().parent.parent
# Short enough to resolve a start-up of a few hundred ms to well under 1%, long enough
# that the poller does not steal a core from the process it is timing.
POLL_SECONDS = 0.001
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
# The cores the load-heavy figures split between server and load generator.
SERVER_CPU = 0
LOAD_CPU = 1


@dataclass(frozen=True)
class Sandbox:
    """A temp dir standing in for the user's runtime, state and config locations."""

    root: Path
    paths: Paths

    @classmethod
    def at(cls, root: Path) -> Sandbox:
        paths = Paths(
            runtime_dir=root / "run", state_dir=root / "state", config_file=root / "config.toml"
        )
        return cls(root=root, paths=paths)

    @property
    def daemon_json(self) -> Path:
        return self.paths.daemon_json

    @property
    def control_socket(self) -> Path:
        return self.paths.control_socket

    @property
    def config_file(self) -> Path:
        return self.paths.config_file

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Return an environment that sees only this sandbox: no user config, no systemd."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OAUTH_BRIDGE_", "LANGSMITH_"))
            and k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET")
        }
        env.update(
            {
                "OAUTH_BRIDGE_RUNTIME_DIR": str(self.paths.runtime_dir),
                "OAUTH_BRIDGE_STATE_DIR": str(self.paths.state_dir),
                "OAUTH_BRIDGE_CONFIG": str(self.config_file),
                # Discard port: figures that never forward must not reach the real one.
                "OAUTH_BRIDGE_CONTROL_PLANE_URL": "http://127.0.0.1:9",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            }
        )
        env.update(extra or {})
        return env


@contextmanager
def sandbox() -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix="ob-bench-"))
    try:
        box = Sandbox.at(root)
        box.config_file.write_text("", encoding="utf-8")
        yield box
    finally:
        shutil.rmtree(root, ignore_errors=True)


def daemon_argv() -> list[str]:
    return [sys.executable, "-m", "bridge", "serve", "--port", "0"]


def floor_argv(ready_file: Path) -> list[str]:
    return [sys.executable, "-m", "bench.floor_server", "--ready-file", str(ready_file)]


@dataclass
class Server:
    """A started server process and what it published once ready."""

    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """SIGTERM, as systemd would; kill only if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    ready_file: Path,
    log: Path,
    cpu: int | None = None,
) -> Server:
    """Exec ``argv`` and return once ``ready_file`` names a URL whose port accepts."""
    with log.open("ab") as out:
        # stderr to a file, not a pipe: a pipe nobody reads would block the access log.
        process = subprocess.Popen(
            list(argv), env=dict(env), cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    if cpu is not None:
        # Set before the interpreter has started any thread; later threads inherit it.
        os.sched_setaffinity(process.pid, {cpu})
    try:
        info = wait_ready(process, ready_file, log)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return Server(process=process, info=info, log=log)


def wait_ready(process: subprocess.Popen[bytes], ready_file: Path, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{process.args!r} exited {code} before ready:\n{tail}")
        info = read_daemon_json(ready_file)
        if info is not None and info.get("pid") == process.pid and _accepts(str(info["url"])):
            return info
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{process.args!r} not ready within {READY_TIMEOUT_SECONDS:.0f}s")


def _accepts(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@contextmanager
def running_daemon(
    env: Mapping[str, str] | None = None, *, cpu: int | None = None
) -> Iterator[tuple[Server, Sandbox]]:
    """Run ``oauth-bridge serve --port 0`` in a fresh sandbox for the ``with`` block."""
    with sandbox() as box:
        server = start(
            daemon_argv(),
            env=box.environ(env),
            ready_file=box.daemon_json,
            log=box.log,
            cpu=cpu,
        )
        try:
            yield server, box
        finally:
            server.stop()


@contextmanager
def running_floor(*, cpu: int | None = None) -> Iterator[Server]:
    """Run the bare aiohttp floor server in a fresh sandbox for the ``with`` block."""
    with sandbox() as box:
        server = start(
            floor_argv(box.daemon_json),
            env=box.environ(),
            ready_file=box.daemon_json,
            log=box.log,
            cpu=cpu,
        )
        try:
            yield server
        finally:
            server.stop()


def two_cores() -> bool:
    """Say whether server and load can each have a core of their own."""
    return {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)
