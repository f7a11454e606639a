"""The daemon runs under MemoryDenyWriteExecute=: shown with the kernel's own W^X switch.

systemd implements MemoryDenyWriteExecute= with a seccomp filter; Linux >= 6.3 offers
the same rule as prctl(PR_SET_MDWE), which survives execve. A daemon started under it
that completes a login is a daemon that needs no writable-and-executable memory.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp

from bridge.client.transport import ControlClient
from bridge.paths import Paths
from tests.conftest import daemon_environ, start_process, wait_ready
from tests.control_plane_double import ControlPlaneDouble

# Switch W^X on for this process and everything it execs, then become the program.
UNDER_MDWE = r"""
import ctypes, os, sys
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0):
    sys.exit(f"prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())}")
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""

PROBE = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"


def test_the_switch_holds_across_execve() -> None:
    """Without this, the test below would prove nothing."""
    result = subprocess.run(
        [sys.executable, "-c", UNDER_MDWE, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode != 0
    assert "Permission denied" in result.stderr


async def test_a_login_completes_in_a_daemon_under_memory_deny_write_execute(
    paths: Paths, control_plane: ControlPlaneDouble
) -> None:
    proc = start_process(
        paths, daemon_environ(paths, control_plane.url), python_args=("-c", UNDER_MDWE)
    )
    try:
        info = await asyncio.to_thread(wait_ready, proc)
        answer = ControlClient(paths.control_socket).request(
            "POST", "/v1/logins", {"provider_id": "github", "state": "st-mdwe"}
        )
        login: dict[str, Any] = answer.body
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(f"{info['url']}/callback/github?code=c&state=st-mdwe") as response,
        ):
            assert response.status == 200
        done = ControlClient(paths.control_socket).request("GET", f"/v1/logins/{login['id']}")

        assert done.body["status"] == "succeeded"
        assert [c.body for c in control_plane.calls] == [{"code": "c", "state": "st-mdwe"}]
    finally:
        proc.process.kill()
        await asyncio.to_thread(proc.process.wait, 10)
