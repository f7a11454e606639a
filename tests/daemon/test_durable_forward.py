"""A power cut never forwards a code twice: the move to ``forwarding`` is on disk first.

The daemon runs under strace, which records its syscalls in the order they happen:
between the callback coming in and the forward going out, the store's WAL must have
been synced (fsync or fdatasync). A registration stays cheap: it syncs nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bridge.paths import Paths, read_daemon_json
from tests.conftest import REPO, daemon_environ, require_tool, wait_for
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_daemon_process import hit, register

SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<([^>]*)>")
TRACED = "trace=fsync,fdatasync,write,writev,sendto,sendmsg,read,recvfrom"


def between(lines: list[str], start: str, end: str) -> list[str]:
    """Return the syscalls after the first line holding ``start`` up to the next holding ``end``."""
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i in range(first, len(lines)) if end in lines[i])
    return lines[first:last]


def store_syncs(lines: list[str]) -> list[str]:
    return [
        m.group(1) for line in lines if (m := SYNC.search(line)) and "logins.sqlite3" in m.group(1)
    ]


def start_traced(
    paths: Paths, env: dict[str, str], trace: Path, log: Path
) -> tuple[dict[str, Any], subprocess.Popen[bytes]]:
    """Start ``serve`` under strace; return its daemon.json once it is ready."""
    strace = require_tool("strace", "strace")
    paths.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("", encoding="utf-8")
    argv = [strace, "-f", "-y", "-s", "120", "-o", str(trace), "-e", TRACED]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*argv, sys.executable, "-m", "bridge", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
        )
    wait_for(lambda: read_daemon_json(paths.daemon_json) is not None, what="daemon.json")
    info = read_daemon_json(paths.daemon_json)
    assert info is not None
    return info, process


def stop(info: dict[str, Any], strace: subprocess.Popen[bytes]) -> None:
    os.kill(int(str(info["pid"])), signal.SIGTERM)  # the daemon's own pid, not strace's
    strace.wait(15)


async def test_the_forwarding_mark_is_synced_before_the_forward_leaves(
    paths: Paths, control_plane: ControlPlaneDouble, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.txt"
    env = daemon_environ(paths, control_plane.url)
    info, strace = await asyncio.to_thread(start_traced, paths, env, trace, tmp_path / "daemon.out")
    try:
        await asyncio.to_thread(register, paths, "st-durable")
        assert await hit(f"{info['url']}/callback/github?code=c-durable&state=st-durable") == 200
    finally:
        await asyncio.to_thread(stop, info, strace)

    lines = trace.read_text(encoding="utf-8", errors="replace").splitlines()
    assert [c.body for c in control_plane.calls] == [{"code": "c-durable", "state": "st-durable"}]
    forwarding = between(lines, "GET /callback/github?code=c-durable", "POST /v2/auth/callback")
    registering = between(lines, "POST /v1/logins", "HTTP/1.1 201")
    assert store_syncs(forwarding), "the login store was not synced before the forward left"
    assert store_syncs(registering) == []
