"""One booted Debian 12 container for the tier, with this checkout's wheel in a venv.

The root is built before pytest by scripts/test (`bash tests/systemd_container/build-root.sh`);
when it is not, the first test of the tier gets the time to build it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.systemd_container.guest import (
    CONFIG,
    CONFIG_DIR,
    DOUBLE_PORT,
    DOUBLE_URL,
    STATE_DIR,
    UNIT_DIR,
    VENV,
    Container,
    Guest,
    build_root,
    missing_tools,
    poll,
    project_wheel,
    root_is_built,
    snapshot,
    wheelhouse,
)

# The loopback redirect_uris the double lets in: the default port and the ones the
# port tests configure.
PORTS = (8765, 9876, 9877)
REDIRECT_URIS = [
    f"http://{host}:{port}/callback/github" for port in PORTS for host in ("127.0.0.1", "[::1]")
]
ROOT_BUILD_TIMEOUT = 900
# A daemon a tool started on its own (when the service would not start) outlives the
# units: end it, so that it cannot hold the port for the next test.
KILL_STRAY_DAEMONS = """
import os, signal
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    if b"bridge" in argv and b"serve" in argv:
        os.kill(int(pid), signal.SIGKILL)
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give the tier's first test the time to build the root when it is not cached yet."""
    ours = [item for item in items if "systemd_container" in item.nodeid.split("::")[0]]
    if ours and not root_is_built():
        ours[0].add_marker(pytest.mark.timeout(ROOT_BUILD_TIMEOUT))


@pytest.fixture(scope="session")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    if os.geteuid() != 0:
        pytest.fail("the systemd container tier needs root (systemd-nspawn, debootstrap)")
    if missing := missing_tools():
        pytest.fail(
            f"missing {', '.join(missing)}: apt-get install debootstrap systemd-container "
            "(scripts/test does)"
        )
    root = build_root()
    source = snapshot(tmp_path_factory.mktemp("src"))
    wheel = project_wheel(source, tmp_path_factory.mktemp("wheel"))
    deps = wheelhouse(wheel)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    box = Container(
        root,
        name=f"oauth-bridge-ci-{worker}",
        binds_ro=[(deps, "/wheels"), (wheel.parent, "/project"), (source, "/src")],
        log=tmp_path_factory.mktemp("console") / "console.log",
    )
    box.start()
    try:
        guest = Guest(box)
        pip = max(root.glob("usr/share/python-wheels/pip-*.whl")).relative_to(root)
        guest.sh(f"python3 -m venv --without-pip {VENV}")
        # Debian's pip wheel, run as a zip: offline, from the wheelhouse only.
        guest.sh(
            f"{VENV}/bin/python /{pip}/pip install -q --no-index --find-links=/wheels "
            f"/project/{wheel.name}",
            timeout=120,
        )
        guest.sh(
            "systemd-run --user --quiet --unit=control-plane-double --setenv=PYTHONPATH=/src "
            f"{VENV}/bin/python -m tests.systemd_container.double {DOUBLE_PORT} "
            + " ".join(REDIRECT_URIS)
        )
        poll(
            "the control-plane double",
            lambda: guest.get(f"{DOUBLE_URL}/test/auth-requests")[0] == 200,
        )
        yield guest
    finally:
        box.stop()


@pytest.fixture
def guest(booted: Guest) -> Iterator[Guest]:
    """The guest with no oauth-bridge unit installed, and a fresh config, for each test."""
    booted.write(f"{CONFIG_DIR}/config.toml", CONFIG)
    booted.write(f"{CONFIG_DIR}/api-key", "test-api-key-0123\n")
    yield booted
    booted.oauth_bridge("install-service", "--uninstall", "--enable", "--force", check=False)
    booted.systemctl(
        "reset-failed", "oauth-bridge.service", "oauth-bridge.socket",
        "oauth-bridge-control.socket", check=False,
    )  # fmt: skip
    booted.sh(f"rm -rf {UNIT_DIR}/oauth-bridge.service.d {STATE_DIR} $XDG_RUNTIME_DIR/oauth-bridge")
    booted.systemctl("daemon-reload")
    booted.sh(f"python3 -c '{KILL_STRAY_DAEMONS}'")
