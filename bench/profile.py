"""The profiles behind docs/BENCHMARKS.md's account of the misses: ``python -m bench.profile``.

Writes docs/profiles/cold-start-importtime.txt (what the daemon's start-up imports cost),
docs/profiles/forward-c32.txt (pyinstrument of the daemon while 32 callbacks at a time go
through it to the control-plane double) and docs/profiles/rejection.txt (the same while
wrk floods it with unknown states). Needs the `bench` extra (pyinstrument) and wrk.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import subprocess
import sys
from pathlib import Path

from bench import control, flow, processes, rejection
from tests.control_plane_double import API_KEY, BEARER, WORKSPACE_ID

OUT = processes.REPO / "docs" / "profiles"
CALLBACKS = 3000


def importtime() -> str:
    """Return the start-up imports that cost most, by cumulative microseconds."""
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "import bridge.daemon.lifecycle, bridge.daemon.config",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=processes.REPO,
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)), match.group(4)))
    rows.sort(reverse=True)
    lines = ["cumulative µs  module (indent = import depth)"]
    lines += [
        f"{cumulative:>13}  {' ' * (depth - 1)}{name}" for cumulative, depth, name in rows[:40]
    ]
    return "\n".join(lines) + "\n"


def profiled_daemon(out: Path) -> list[str]:
    """Return the argv of ``serve --port 0`` under pyinstrument, writing text to ``out``."""
    return [
        sys.executable,
        "-m",
        "pyinstrument",
        "-i",
        "0.0005",
        "-r",
        "text",
        "-o",
        str(out),
        "-m",
        "bridge",
        "serve",
        "--port",
        "0",
    ]


def rejection_profile(out: Path) -> None:
    """Run the daemon under pyinstrument while wrk floods it with unknown states."""
    with processes.sandbox() as box:
        server = processes.start(
            profiled_daemon(out),
            env=box.environ(),
            ready_file=box.daemon_json,
            log=box.log,
            cpu=processes.SERVER_CPU,
        )
        try:
            rejection.wrk(server, 8)
        finally:
            server.stop()


def forward_profile(out: Path) -> None:
    """Run the daemon under pyinstrument while callbacks go through it 32 at a time."""
    argv = profiled_daemon(out)
    with flow.control_plane_double() as double_url, processes.sandbox() as box:
        env = box.environ(
            {
                "OAUTH_BRIDGE_CONTROL_PLANE_URL": double_url,
                "LANGSMITH_API_KEY": API_KEY,
                "LANGSMITH_WORKSPACE_ID": WORKSPACE_ID,
                "OAUTH_BRIDGE_BEARER_TOKEN": BEARER,
                "OAUTH_BRIDGE_PENDING_LIMIT": str(CALLBACKS * 2),
            }
        )
        server = processes.start(argv, env=env, ready_file=box.daemon_json, log=box.log)
        try:
            asyncio.run(_load(server.url, box.control_socket))
        finally:
            server.stop()


async def _load(url: str, control_socket: Path) -> None:
    states = [f"profile-{secrets.token_hex(4)}-{i}" for i in range(CALLBACKS)]
    async with control.control_session(control_socket) as session:
        await control.register_many(session, states)
    async with control.browser_session() as browser:

        async def one(state: str) -> float:
            async with browser.get(
                f"{url}/callback/github?code=x&state={state}", allow_redirects=False
            ) as response:
                await response.read()
            return 0.0

        await control.fan_out(one, states, concurrency=32)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cold-start-importtime.txt").write_text(importtime(), encoding="utf-8")
    forward_profile(OUT / "forward-c32.txt")
    rejection_profile(OUT / "rejection.txt")
    print(f"written to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
