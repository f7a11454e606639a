"""A cold ``login`` starts the daemon before importing the rest of itself: still one daemon.

``start_early`` spawns ``serve`` only where nothing can answer and no other tool is
starting one; ``ensure_daemon`` then waits for that daemon, under the start lock it took.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterator

import pytest

from bridge.client import autostart
from bridge.client.autostart import ensure_daemon, start_early
from bridge.paths import Paths
from bridge.platform import try_lock
from tests.client.conftest import serve_pids
from tests.client.test_cli import cli, finish, spawn
from tests.conftest import DaemonProcess, daemon_environ, wait_ready
from tests.control_plane_double import ControlPlaneDouble


@pytest.fixture
def sandboxed(
    paths: Paths, control_plane: ControlPlaneDouble, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Paths]:
    """This process's environment pointed at the test's dirs; its daemons reaped at the end."""
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("", encoding="utf-8")
    for name, value in daemon_environ(paths, control_plane.url).items():
        monkeypatch.setenv(name, value)
    yield paths
    for early in autostart._EARLY.values():
        early.lock.close()
    autostart._EARLY.clear()
    for pid in serve_pids(paths):
        os.kill(pid, signal.SIGKILL)


async def test_the_early_daemon_is_the_one_ensure_daemon_returns(sandboxed: Paths) -> None:
    start_early(sandboxed)

    spawned = autostart._EARLY[sandboxed.control_socket].process
    try:
        status = await asyncio.to_thread(ensure_daemon, sandboxed, start=True)

        assert status["pid"] == spawned.pid
        assert serve_pids(sandboxed) == [spawned.pid]
        assert sandboxed.control_socket not in autostart._EARLY
        with sandboxed.start_lock_file.open("a+") as lock:
            assert try_lock(lock), "the start lock was not let go once the daemon answered"
    finally:
        spawned.kill()
        spawned.wait(10)


async def test_nothing_is_started_early_where_a_daemon_runs(
    daemon_process: Callable[..., DaemonProcess], sandboxed: Paths
) -> None:
    proc = daemon_process()
    await asyncio.to_thread(wait_ready, proc)

    start_early(sandboxed)

    assert autostart._EARLY == {}
    assert serve_pids(sandboxed) == [proc.process.pid]


def test_a_tool_that_holds_the_start_lock_is_left_to_start_it(sandboxed: Paths) -> None:
    sandboxed.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sandboxed.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with sandboxed.start_lock_file.open("a+") as lock:
        assert try_lock(lock)

        start_early(sandboxed)

    assert autostart._EARLY == {}
    assert serve_pids(sandboxed) == []


def test_a_refused_argument_starts_no_daemon(cli_env: dict[str, str], paths: Paths) -> None:
    result = cli(cli_env, "login", "--provider", "github", "--scope", "repo", "--ttl", "0")

    assert result.returncode == 2
    assert "--ttl must be between 1 and 3600 seconds" in result.stderr
    assert serve_pids(paths) == []


async def test_two_cold_logins_at_once_start_exactly_one_daemon(
    cli_env: dict[str, str], paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    control_plane.tokens[("github", "u-1")] = "tok-already"
    argv = ["login", "--provider", "github", "--scope", "repo", "--user-id", "u-1", "--json"]

    procs = [spawn(cli_env, *argv) for _ in range(2)]
    results = [await finish(p) for p in procs]

    assert [r[0] for r in results] == [0, 0], results
    assert [json.loads(r[1])["result"]["token"] for r in results] == ["tok-already"] * 2
    assert len(serve_pids(paths)) == 1
