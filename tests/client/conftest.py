"""Fixtures of the tools' side: a CLI environment whose auto-started daemons are reaped."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.paths import Paths
from tests.conftest import daemon_environ
from tests.control_plane_double import ControlPlaneDouble


@pytest.fixture
def cli_env(paths: Paths, control_plane: ControlPlaneDouble) -> Iterator[dict[str, str]]:
    """The CLI's environment; any daemon it auto-starts is stopped at the end."""
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("", encoding="utf-8")
    env = daemon_environ(paths, control_plane.url)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    # These tests play the browser on this machine, which has no screen: left to itself
    # the auto rule would pick the hosted callback. The tests of the rule set their own.
    env["OAUTH_BRIDGE_CALLBACK"] = "loopback"
    yield env
    for pid in serve_pids(paths):
        os.kill(pid, signal.SIGKILL)


def serve_pids(paths: Paths) -> list[int]:
    """Every `bridge serve` process that uses this test's runtime dir."""
    marker = f"OAUTH_BRIDGE_RUNTIME_DIR={paths.runtime_dir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in cmdline and b"bridge" in cmdline and marker in environ:
            pids.append(int(proc.name))
    return pids
