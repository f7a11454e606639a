"""Another user who takes the port while the daemon is down is named, and the login goes.

The tests run as root (CI does) to make that second user.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from bridge.client.transport import ControlClient
from bridge.paths import Paths
from tests.client.test_cli import spawn
from tests.client.test_login import until
from tests.conftest import DaemonProcess, wait_ready
from tests.control_plane_double import ControlPlaneDouble
from tests.daemon.test_other_user import User, other_user  # noqa: F401  # the fixture

# The squatter: another user's listener on the daemon's port, held until stdin closes.
SQUAT = (
    "server = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "print('holding', flush=True)\n"
    "sys.stdin.read()\n"
)


async def test_a_squatter_of_another_user_on_the_port_is_named_and_the_login_cancelled(
    other_user: User,  # noqa: F811  # the fixture imported above
    cli_env: dict[str, str],
    daemon_process: Any,
    control_plane: ControlPlaneDouble,
    paths: Paths,
) -> None:
    daemon: DaemonProcess = daemon_process()
    info = await asyncio.to_thread(wait_ready, daemon)
    port = int(str(info["url"]).rsplit(":", 1)[1])
    control_plane.allow("github", f"{info['url']}/callback/github")
    waiting = spawn(
        cli_env, "login", "--provider", "github", "--scope", "repo", "--no-open", "--json"
    )
    await until(lambda: next(iter(control_plane.auth_requests.values()), None))
    daemon.process.send_signal(signal.SIGTERM)  # `oauth-bridge stop --force`
    await asyncio.to_thread(daemon.process.wait, 15)
    squatter = await asyncio.create_subprocess_exec(
        *other_user.command(SQUAT, str(port)),
        cwd="/",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert squatter.stdout is not None
        assert (await asyncio.wait_for(squatter.stdout.readline(), 20)).strip() == b"holding"
        out, err = await asyncio.to_thread(waiting.communicate, timeout=30)
    finally:
        assert squatter.stdin is not None
        squatter.stdin.close()
        await asyncio.wait_for(squatter.wait(), 10)

    assert waiting.returncode == 3, err
    assert "Do not finish signing in" in err
    assert f"held by another user of this computer (uid {other_user.uid})" in err
    assert json.loads(out)["error"] == "daemon_unavailable"
    # The tool started a daemon again meanwhile (on another port): through it, the
    # login was cancelled, so no later callback can complete it.
    listed = await asyncio.to_thread(
        ControlClient(paths.control_socket).request, "GET", "/v1/logins"
    )
    assert [login["status"] for login in listed.body["logins"]] == ["cancelled"]
    assert control_plane.calls == []
