"""The Wine tier: a Windows CPython under Wine runs the daemon and the tool.

The tree (Wine, CPython 3.11.9 for Windows, the daemon's wheels) is built before pytest
by scripts/test (`bash tests/wine/setup.sh`, cached); when it is not, the tier's first
test gets the time to build it. A machine that cannot build it fails the tier with
setup.sh's own message: this project's tests never skip.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.control_plane_double import API_KEY, BEARER, WORKSPACE_ID
from tests.wine.winepy import BUILD_TIMEOUT, Wine, build, windows_path

REPO = Path(__file__).resolve().parent.parent.parent
# A Windows daemon takes about 3 s to come up under Wine (imports, no bytecode cache).
READY_SECONDS = 60.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give the tier's first test the time to build the tree when it is not cached yet."""
    ours = [item for item in items if item.nodeid.startswith("tests/wine/")]
    if ours:
        ours[0].add_marker(pytest.mark.timeout(BUILD_TIMEOUT + 120))


@pytest.fixture(scope="session")
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wine]:
    """A private clone of the cached prefix, its wineserver up for the session."""
    box = Wine(build()).clone(tmp_path_factory.mktemp("wine") / "prefix")
    box.up()
    yield box
    box.down()


@pytest.fixture(scope="session")
def winpython(wine: Wine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python.exe that imports this checkout (python.exe -P -m bridge ...)."""
    return wine.view(REPO, tmp_path_factory.mktemp("py"))


@dataclass
class WindowsDaemon:
    """`python.exe -m bridge serve --port 0` under Wine, and the environment it runs in."""

    wine: Wine
    python: Path
    process: subprocess.Popen[str]
    env: dict[str, str]
    runtime_dir: Path  # the Linux side of the Windows path it was given
    info: dict[str, object]

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def tool(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``oauth-bridge ARGV`` under Wine, as the daemon's user, to its end."""
        return self.wine.run(
            self.python, ["-P", "-m", "bridge", *argv], env=self.env, timeout=timeout
        )

    def start_tool(self, *argv: str) -> subprocess.Popen[str]:
        return self.wine.start(self.python, ["-P", "-m", "bridge", *argv], env=self.env)

    def stop(self) -> tuple[int, str]:
        """SIGINT (a clean stop under Wine; SIGTERM is a kill there); exit code and log."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def windows_environ(base: Path, control_plane_url: str) -> dict[str, str]:
    """The daemon's and the tool's environment: Windows spellings of the test's dirs."""
    for name in ("run", "state"):
        (base / name).mkdir(exist_ok=True)
    (base / "config.toml").write_text("", encoding="utf-8")
    return {
        "OAUTH_BRIDGE_RUNTIME_DIR": windows_path(base / "run"),
        "OAUTH_BRIDGE_STATE_DIR": windows_path(base / "state"),
        "OAUTH_BRIDGE_CONFIG": windows_path(base / "config.toml"),
        "OAUTH_BRIDGE_CONTROL_PLANE_URL": control_plane_url,
        "OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS": "3",
        "LANGSMITH_API_KEY": API_KEY,
        "LANGSMITH_WORKSPACE_ID": WORKSPACE_ID,
        "OAUTH_BRIDGE_BEARER_TOKEN": BEARER,
    }


def start_windows_daemon(
    wine: Wine, python: Path, base: Path, env: Mapping[str, str]
) -> WindowsDaemon:
    """Start the daemon and wait for its daemon.json (written once every listener accepts)."""
    import json

    process = wine.start(python, ["-P", "-m", "bridge", "serve", "--port", "0"], env=env)
    daemon_json = base / "run" / "daemon.json"
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"the Windows daemon exited {process.returncode}:\n{err}")
        try:
            info = json.loads(daemon_json.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        return WindowsDaemon(wine, python, process, dict(env), base / "run", info)
    process.kill()
    _, err = process.communicate()
    raise AssertionError(f"the Windows daemon was not ready in {READY_SECONDS:.0f}s:\n{err}")
