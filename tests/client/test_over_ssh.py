"""A login in a real SSH session (Debian's sshd, run per connection, no port, no network).

``ssh`` reaches ``sshd -i`` through a ProxyCommand: a real SSH session, with its
SSH_CONNECTION, on this machine's loopback. For ``ssh -L`` (doctor's advice), sshd runs
in a network namespace of its own, as the far machine: its loopback is not ours.
The tests run as root (CI does): sshd needs it, and so does the namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.client.test_login import consent, follow_trampoline, until
from tests.conftest import REPO
from tests.control_plane_double import ControlPlaneDouble

SSHD = "/usr/sbin/sshd"


@dataclass(frozen=True)
class Ssh:
    """An ssh command line that reaches a fresh sshd -i, as root, with our environment."""

    key: Path
    config: Path

    def argv(
        self, *remote: str, proxy_prefix: str = "", forwards: tuple[str, ...] = ()
    ) -> list[str]:
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.key),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "SendEnv=OAUTH_BRIDGE_* LANGSMITH_*",
            "-o",
            f"ProxyCommand={proxy_prefix}{SSHD} -i -f {self.config}",
            *forwards,
            "root@far-machine",
            *remote,
        ]


@pytest.fixture
def ssh(tmp_path: Path) -> Ssh:
    if os.geteuid() != 0:
        pytest.fail("sshd needs root (CI runs as root)")
    for tool, package in ((SSHD, "openssh-server"), ("ssh", "openssh-client")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: install Debian's {package} (scripts/test does)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
            check=True,
            timeout=30,
        )
    authorized = tmp_path / "authorized_keys"
    shutil.copy(tmp_path / "client.pub", authorized)
    config = tmp_path / "sshd_config"
    config.write_text(
        f"HostKey {tmp_path / 'host'}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "StrictModes no\nPermitRootLogin prohibit-password\nUsePAM no\nPidFile none\n"
        "AcceptEnv OAUTH_BRIDGE_* LANGSMITH_*\nAllowTcpForwarding yes\nLogLevel ERROR\n",
        encoding="utf-8",
    )
    return Ssh(key=tmp_path / "client", config=config)


def start_session(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the ssh client as a user's terminal would, its output piped to the test."""
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def remote_login(*args: str) -> tuple[str, ...]:
    # The far machine's shell runs the same interpreter (this checkout, installed).
    return ("cd", str(REPO), "&&", sys.executable, "-m", "bridge", "login", *args)


async def test_login_over_ssh_picks_the_hosted_page_and_needs_one_step(
    ssh: Ssh, cli_env: dict[str, str], control_plane: ControlPlaneDouble
) -> None:
    env = {**cli_env}
    env.pop("OAUTH_BRIDGE_CALLBACK", None)  # left to the rule, as a user would
    session = start_session(
        ssh.argv(*remote_login("--provider", "github", "--scope", "repo", "--json")), env
    )
    auth = await until(lambda: next(iter(control_plane.auth_requests.values()), None), 30)
    # The one step: open the printed address in the browser on the user's own machine.
    printed = f"{control_plane.url}/x?{urlencode({'redirect_uri': auth.redirect_uri, 'state': auth.state})}"
    await asyncio.to_thread(consent, printed)
    out, err = await asyncio.to_thread(session.communicate, timeout=60)

    assert session.returncode == 0, err
    login = json.loads(out)
    assert (login["status"], login["callback"]) == ("succeeded", "hosted")
    assert "an SSH session" in err
    assert "open this in any browser, on any device" in err
    authenticate = next(c for c in control_plane.auth_calls if c.raw_path.endswith("authenticate"))
    assert "redirect_uri" not in authenticate.body


async def test_the_documented_ssh_forward_carries_a_loopback_login_to_the_far_daemon(
    ssh: Ssh, cli_env: dict[str, str], control_plane: ControlPlaneDouble
) -> None:
    # The far machine: a network namespace of its own, whose loopback is out of our
    # reach but through the forwards of this one ssh command (doctor's advice).
    port = 8765  # free in a namespace that has nothing else
    double_port = control_plane.url.rsplit(":", 1)[1]
    control_plane.allow("github", f"http://127.0.0.1:{port}/callback/github")
    env = {**cli_env, "OAUTH_BRIDGE_PORT": str(port)}
    proxy = 'unshare --net sh -c \'ip link set lo up && exec "$0" "$@"\' '
    session = start_session(
        ssh.argv(
            *remote_login(
                "--provider",
                "github",
                "--scope",
                "repo",
                "--callback",
                "loopback",
                "--no-open",
                "--json",
            ),
            proxy_prefix=proxy,
            forwards=(
                "-L",
                f"{port}:127.0.0.1:{port}",  # the browser here, to the daemon there
                "-R",
                f"{double_port}:127.0.0.1:{double_port}",  # the daemon there, to LangSmith
            ),
        ),
        env,
    )

    def printed_trampoline() -> str:
        assert session.stderr is not None
        for line in session.stderr:  # ends when the session does
            found = re.search(r"http://127\.0\.0\.1:\d+/go/[\w-]+", line)
            if found:
                return found.group()
        raise AssertionError("the ssh session ended before printing an address")

    go = await asyncio.wait_for(asyncio.to_thread(printed_trampoline), 30)
    auth_url = await asyncio.to_thread(follow_trampoline, go)  # through the forward
    page = await asyncio.to_thread(consent, auth_url)
    out, err = await asyncio.to_thread(session.communicate, timeout=60)

    assert session.returncode == 0, err
    assert go.startswith(f"http://127.0.0.1:{port}/go/")
    assert 'content="succeeded"' in page
    login = json.loads(out)
    assert (login["status"], login["callback"], login["browser_seen"]) == (
        "succeeded",
        "loopback",
        True,
    )
    assert len(control_plane.calls) == 1  # forwarded by the far daemon, through -R


# In a network namespace of its own (a container's): the daemon on its loopback, and a
# non-loopback address there (the container's own, which a runtime's published port
# reaches; on lo, for want of a dummy device here).
PUBLISHED = r"""
set -e
ip link set lo up
ip addr add 198.18.0.1/32 dev lo
"$PYTHON" -m bridge serve --port 8765 >"$RUN/serve.log" 2>&1 &
daemon=$!
"$PYTHON" - <<'PY'
import json, os, socket, time
deadline = time.monotonic() + 20
while not os.path.exists(os.environ["RUN"] + "/run/daemon.json"):
    assert time.monotonic() < deadline, open(os.environ["RUN"] + "/serve.log").read()
    time.sleep(0.01)  # a poll for the daemon's readiness file, bounded by the deadline
for host in ("127.0.0.1", "198.18.0.1"):
    try:
        socket.create_connection((host, 8765), timeout=5).close()
        print(host, "reached")
    except OSError:
        print(host, "refused")
PY
kill "$daemon"
"""


def test_a_published_port_does_not_reach_the_daemon_only_a_loopback_forward_does(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("a network namespace of its own needs root (CI runs as root)")
    env = {
        **cli_env,
        "PYTHON": sys.executable,
        "RUN": str(tmp_path),
        "OAUTH_BRIDGE_RUNTIME_DIR": str(tmp_path / "run"),
        "OAUTH_BRIDGE_STATE_DIR": str(tmp_path / "state"),
    }

    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", PUBLISHED],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    # What a container runtime publishes reaches the container's own address: the
    # daemon is not there. Only a forward to its loopback (ssh -L above, VS Code's) is.
    assert result.stdout.splitlines() == ["127.0.0.1 reached", "198.18.0.1 refused"]
