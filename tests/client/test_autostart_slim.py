"""A tool whose own Python has only the standard library still gets a daemon started.

The tool's environment here is a real venv made with no packages at all; ``bridge.client``
reaches it through PYTHONPATH, as a vendored copy or a plugin's path would. The daemon
must then be started by the ``oauth-bridge`` found on PATH, never by that interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.client.transport import ControlClient
from bridge.paths import Paths, read_daemon_json
from tests.conftest import REPO, daemon_environ
from tests.control_plane_double import ControlPlaneDouble

# The repo venv's console script, as `pip install .` made it.
OAUTH_BRIDGE = Path(sys.executable).parent / "oauth-bridge"

TOOL = """
import importlib.util, sys
from pathlib import Path
from bridge.client import Bridge, DaemonUnavailable
from bridge.paths import Paths

assert importlib.util.find_spec("pydantic") is None, "this Python is not slim"
runtime, state, config = sys.argv[1:4]
try:
    bridge = Bridge(paths=Paths(Path(runtime), Path(state), Path(config)))
except DaemonUnavailable as exc:
    print(exc.message, file=sys.stderr)
    sys.exit(3)
assert "pydantic" not in sys.modules and "aiohttp" not in sys.modules
"""


@pytest.fixture(scope="module")
def slim_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with no packages: not even pip."""
    venv = tmp_path_factory.mktemp("slim") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    return venv / "bin" / "python"


@pytest.fixture
def reaped(paths: Paths) -> Iterator[None]:
    """Kill whatever daemon the tool started (it runs from another interpreter)."""
    yield
    info = read_daemon_json(paths.daemon_json) or {}
    pid = info.get("pid")
    if isinstance(pid, int):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def run_tool(python: Path, env: dict[str, str], paths: Paths) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(python),
            "-c",
            TOOL,
            str(paths.runtime_dir),
            str(paths.state_dir),
            str(paths.config_file),
        ],
        env=env,
        cwd=str(paths.runtime_dir.parent),  # not the repo: bridge comes from PYTHONPATH
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def slim_environment(paths: Paths, control_plane: ControlPlaneDouble, path: str) -> dict[str, str]:
    env = daemon_environ(paths, control_plane.url)
    env.update(PYTHONPATH=str(REPO), PATH=path)
    env.pop("VIRTUAL_ENV", None)
    return env


@pytest.mark.usefixtures("reaped")
async def test_bridge_from_a_slim_python_starts_the_daemon_with_oauth_bridge_on_path(
    slim_python: Path, paths: Paths, control_plane: ControlPlaneDouble, tmp_path: Path
) -> None:
    assert OAUTH_BRIDGE.is_file(), f"{OAUTH_BRIDGE} is missing: pip install -e . makes it"
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "oauth-bridge").symlink_to(OAUTH_BRIDGE)
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("", encoding="utf-8")
    env = slim_environment(paths, control_plane, f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin")

    result = await asyncio.to_thread(run_tool, slim_python, env, paths)

    assert result.returncode == 0, result.stderr
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    status = await asyncio.to_thread(
        ControlClient(paths.control_socket).request, "GET", "/v1/status"
    )
    assert (status.status, status.body["pid"]) == (200, info["pid"])
    cmdline = await asyncio.to_thread(Path(f"/proc/{info['pid']}/cmdline").read_bytes)
    command = cmdline.split(b"\0")
    assert str(tools / "oauth-bridge").encode() in command
    assert str(slim_python).encode() not in command


async def test_with_neither_it_says_what_it_looked_for(
    slim_python: Path, paths: Paths, control_plane: ControlPlaneDouble, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("", encoding="utf-8")
    env = slim_environment(paths, control_plane, f"{empty}{os.pathsep}/usr/bin{os.pathsep}/bin")

    result = await asyncio.to_thread(run_tool, slim_python, env, paths)

    assert result.returncode == 3, result.stderr
    assert str(slim_python) in result.stderr
    assert "pydantic" in result.stderr
    assert "no 'oauth-bridge' command is on PATH" in result.stderr
    assert "No module named" not in result.stderr
    assert not paths.daemon_log.exists()  # no daemon was tried
