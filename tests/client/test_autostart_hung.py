"""A daemon that holds the control socket but does not answer is named, in seconds.

The daemon here is a real ``serve`` process, stopped with SIGSTOP: its socket still takes
connections (the kernel queues them) and never answers one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.client.autostart import ensure_daemon, running_daemon
from bridge.errors import DaemonNotAnswering, DaemonUnavailable, ExitCode
from bridge.paths import Paths
from tests.client.test_cli import cli
from tests.conftest import DaemonProcess, daemon_environ, wait_ready
from tests.control_plane_double import ControlPlaneDouble

# The brief: a hung daemon is reported within this long, not after 46 s.
REPORTED_WITHIN_SECONDS = 5.0


@pytest.fixture
def stopped_daemon(daemon_process: Any) -> Iterator[DaemonProcess]:
    """A running daemon, then SIGSTOP'd; continued and killed at the end."""
    proc: DaemonProcess = daemon_process()
    wait_ready(proc)
    os.kill(proc.process.pid, signal.SIGSTOP)
    try:
        yield proc
    finally:
        if proc.process.poll() is None:  # a test may have stopped it for good
            os.kill(proc.process.pid, signal.SIGCONT)
            proc.process.kill()
        proc.process.wait(10)


def timed(call: Any, *args: Any, **kwargs: Any) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        call(*args, **kwargs)
    except BaseException as exc:  # returned, for the test to look at
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


async def test_a_stopped_daemon_is_reported_as_not_answering_with_its_pid(
    stopped_daemon: DaemonProcess, paths: Paths
) -> None:
    pid = stopped_daemon.process.pid

    for call, kwargs in ((running_daemon, {}), (ensure_daemon, {"start": True})):
        took, error = await asyncio.to_thread(timed, call, paths, **kwargs)

        assert isinstance(error, DaemonNotAnswering), error
        assert isinstance(error, DaemonUnavailable)
        assert int(error.exit_code) == 3
        assert error.exit_code == ExitCode.UNAVAILABLE
        assert error.pid == pid
        assert error.stopped is True
        assert f"is not answering (pid {pid})" in error.message
        assert "not running" not in error.message
        assert f"kill -CONT {pid}" in error.message
        assert "oauth-bridge stop" in error.message
        assert took < REPORTED_WITHIN_SECONDS, f"{call.__name__} took {took:.1f}s"


async def test_the_cli_and_doctor_say_so_too(
    stopped_daemon: DaemonProcess, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    pid = stopped_daemon.process.pid
    env = daemon_environ(paths, control_plane.url)

    began = time.monotonic()
    status = await asyncio.to_thread(cli, env, "status")
    status_took = time.monotonic() - began
    began = time.monotonic()
    doctor = await asyncio.to_thread(cli, env, "doctor", "--no-start")
    doctor_took = time.monotonic() - began

    assert status.returncode == 3
    assert f"is not answering (pid {pid})" in status.stderr
    assert status_took < REPORTED_WITHIN_SECONDS
    assert doctor.returncode == 1
    assert f"is not answering (pid {pid})" in doctor.stderr
    assert "held by another program" not in doctor.stderr  # it is held by this daemon
    assert doctor_took < REPORTED_WITHIN_SECONDS


async def test_a_daemon_that_is_gone_is_still_not_running(
    daemon_process: Any, paths: Paths
) -> None:
    """Killed before it could clean up: its socket file and daemon.json stay, nobody listens."""
    proc: DaemonProcess = daemon_process()
    await asyncio.to_thread(wait_ready, proc)
    proc.process.kill()
    await asyncio.to_thread(proc.process.wait, 10)
    assert paths.control_socket.exists()
    assert paths.daemon_json.exists()

    took, error = await asyncio.to_thread(timed, running_daemon, paths)

    assert error is None
    assert took < 1.0


def test_stop_ends_a_daemon_that_does_not_answer(
    stopped_daemon: DaemonProcess, cli_env: dict[str, str]
) -> None:
    from tests.client.test_cli import cli

    result = cli(cli_env, "stop")

    assert result.returncode == 0, result.stderr
    assert "was not answering" in result.stderr
    assert stopped_daemon.process.wait(10) is not None
