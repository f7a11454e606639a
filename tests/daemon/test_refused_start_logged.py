"""A ``serve`` that refuses to start says why in one line of its own log, then exits.

Each start here is a real process whose stderr is a file, as an auto-started daemon's
daemon.log is: the line must be there, in the log's own format, once.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

from bridge.paths import Paths
from tests.conftest import DaemonProcess, daemon_environ, start_process, wait_ready
from tests.control_plane_double import ControlPlaneDouble

# The format bridge.daemon.logs.configure gives every line of the daemon's log.
REFUSAL = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ERROR bridge\.daemon\.lifecycle: refusing to start: (.+)$",
    re.MULTILINE,
)


async def refused(paths: Paths, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Start ``serve``; return its exit code, the one refusal line's reason, and its log."""
    proc: DaemonProcess = start_process(paths, env, *args, log_name="refused.out")
    try:
        code = await asyncio.to_thread(proc.process.wait, 30)
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
    log = await asyncio.to_thread(proc.log_text)
    reasons = REFUSAL.findall(log)
    assert len(reasons) == 1, log
    return code, reasons[0], log


def said_once(log: str, words: str) -> bool:
    """The cause is told by the one log line, not again by a second line of the CLI's."""
    return sum(words in line for line in log.splitlines()) == 1


async def test_another_daemon_holding_the_lock_is_one_line_of_the_log(
    daemon_process: Any, paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    first: DaemonProcess = daemon_process()
    info = await asyncio.to_thread(wait_ready, first)

    code, reason, log = await refused(paths, daemon_environ(paths, control_plane.url))

    assert code == 3
    assert "already running" in reason
    assert info["url"] in reason
    assert said_once(log, "already running")


async def test_a_port_taken_is_one_line_of_the_log(
    paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        env = daemon_environ(paths, control_plane.url)
        env.pop("OAUTH_BRIDGE_PORT")

        code, reason, log = await refused(
            paths, env, "--port", str(other.getsockname()[1]), "--host", "127.0.0.1"
        )

    assert code == 3
    assert "in use by another program" in reason
    assert said_once(log, "in use by another program")


async def test_an_unsafe_runtime_dir_is_one_line_of_the_log(
    paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    paths.runtime_dir.mkdir(parents=True)
    paths.runtime_dir.chmod(0o755)

    code, reason, log = await refused(paths, daemon_environ(paths, control_plane.url))

    assert code == 2
    assert "open to other users" in reason
    assert said_once(log, "open to other users")


async def test_a_bad_config_is_one_line_of_the_log(
    paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('port = "8765"\n', encoding="utf-8")

    code, reason, log = await refused(paths, daemon_environ(paths, control_plane.url))

    assert code == 2
    assert str(paths.config_file) in reason
    assert "key 'port'" in reason
    assert said_once(log, "key 'port'")
