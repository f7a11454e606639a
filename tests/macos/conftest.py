"""What the macOS tests share: the launch stub built once, and interpreters that run as macOS."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool

HERE = Path(__file__).parent
STUB_SOURCE = HERE / "stub" / "launch_stub.c"
AS_MACOS = HERE / "as_macos"  # its sitecustomize makes an interpreter take darwin's paths


def build_launch_stub(directory: Path) -> Path:
    """Compile the stand-in for libSystem's launch_activate_socket into ``directory``."""
    gcc = require_tool("gcc", "gcc")
    library = directory / "liblaunch_stub.so"
    subprocess.run(
        [
            gcc,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-shared",
            "-fPIC",
            "-o",
            str(library),
            str(STUB_SOURCE),
        ],
        check=True,
    )
    return library


@pytest.fixture(scope="session")
def launch_stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_launch_stub(tmp_path_factory.mktemp("launch-stub"))


@pytest.fixture
def mac_home() -> Iterator[Path]:
    """A home of the test's own, short enough for macOS's 104-byte socket paths.

    pytest's tmp_path (/tmp/pytest-of-<user>/pytest-<n>/<test name>0/...) is longer than
    a Mac's own ~/Library/Caches/TemporaryItems/oauth-bridge/control.sock would be.
    """
    home = Path(tempfile.mkdtemp(prefix="mac-", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def as_macos(env: dict[str, str], stub: Path) -> dict[str, str]:
    """``env`` for an interpreter that runs oauth-bridge as on macOS (see as_macos/)."""
    python_path = [str(AS_MACOS), *filter(None, [env.get("PYTHONPATH", "")])]
    return {
        **env,
        "PYTHONPATH": os.pathsep.join(python_path),
        "OAUTH_BRIDGE_TEST_AS_MACOS": str(stub),
    }
