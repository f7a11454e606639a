"""A daemon that forwards to the control-plane double, each in its own process."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.processes import REPO, Sandbox, Server, running_daemon, sandbox
from tests.control_plane_double import API_KEY, BEARER, WORKSPACE_ID

# What the daemon sends on a forward, so a POST straight to the double costs the same.
FORWARD_HEADERS = {
    "Accept": "application/json",
    "X-Api-Key": API_KEY,
    "X-Tenant-Id": WORKSPACE_ID,
    "Authorization": f"Bearer {BEARER}",
}


@contextmanager
def control_plane_double() -> Iterator[str]:
    """Run the double for the ``with`` block and yield its base URL."""
    with sandbox() as box:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.double_server"],
            cwd=REPO,
            env=box.environ(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            if not url.startswith("http://"):
                raise RuntimeError(f"the control-plane double did not start ({url!r})")
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(15)


@contextmanager
def bridge_to_double(pending_limit: int = 20_000) -> Iterator[tuple[Server, Sandbox, str]]:
    """Yield a daemon forwarding to a fresh double, its sandbox, and the double's URL."""
    with control_plane_double() as double_url:
        env = {
            "OAUTH_BRIDGE_CONTROL_PLANE_URL": double_url,
            "LANGSMITH_API_KEY": API_KEY,
            "LANGSMITH_WORKSPACE_ID": WORKSPACE_ID,
            "OAUTH_BRIDGE_BEARER_TOKEN": BEARER,
            "OAUTH_BRIDGE_PENDING_LIMIT": str(pending_limit),
        }
        with running_daemon(env) as (server, box):
            yield server, box, double_url
