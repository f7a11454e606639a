"""A tool that finds no daemon starts one under Windows (detached), as on Linux."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.wine.conftest import windows_environ
from tests.wine.winepy import Wine

pytestmark = pytest.mark.timeout(120)


def finished_output(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """Wait for the process, then take what its stdout holds without waiting for EOF.

    Under Wine a child inherits its parent's Unix stdio whatever its Windows handles are,
    so the detached daemon keeps the tool's pipe open: EOF would come when it exits.
    """
    with process:  # closes its pipes at the end
        code = process.wait(timeout)
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        try:
            data = os.read(process.stdout.fileno(), 1 << 20)
        except BlockingIOError:
            data = b""
    return code, data.decode("utf-8", "replace")


def test_a_tool_starts_a_detached_daemon_when_none_runs_and_stop_ends_it(
    wine: Wine, winpython: Path, tmp_path: Path
) -> None:
    env = {**windows_environ(tmp_path, "http://127.0.0.1:9"), "OAUTH_BRIDGE_PORT": "0"}

    def bridge(*argv: str) -> tuple[int, str]:
        command = ["-P", "-m", "bridge", *argv]
        return finished_output(wine.start(winpython, command, env=env))

    code, out = bridge("expect", "--provider", "github", "--state", "from-windows", "--json")
    try:
        assert code == 0, out
        assert json.loads(out)["status"] == "pending"
        code, out = bridge("status", "--json")
        assert code == 0, out
        status = json.loads(out)
        assert status["pending"] == 1
        assert (tmp_path / "state" / "daemon.log").exists()  # its log, not the tool's pipe
    finally:
        # `stop` on Windows ends the process (TerminateProcess: no graceful way there
        # yet) and waits for its handle to be signalled.
        stopped = bridge("stop", "--force")
    assert stopped[0] == 0
    assert bridge("status")[0] == 3  # gone: the pipe went with it
