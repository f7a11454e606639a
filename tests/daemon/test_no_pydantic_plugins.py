"""No pydantic plugin runs in the daemon: it would be handed every value the models validate.

A plugin is found by its distribution's entry point (group ``pydantic``) wherever the
daemon's interpreter finds packages, an observability SDK's for instance. Here a
distribution of the test's own, on PYTHONPATH, notes in a file that it was loaded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bridge.paths import Paths
from tests.conftest import REPO, DaemonProcess, wait_ready

SPY = """
import os
with open(os.environ["SPY_FILE"], "a") as handle:
    handle.write("loaded\\n")


class Spy:
    def new_schema_validator(self, *args, **kwargs):
        with open(os.environ["SPY_FILE"], "a") as handle:
            handle.write("validator\\n")
        return None, None, None


plugin = Spy()
"""


def spy_distribution(directory: Path) -> Path:
    """A package and its dist-info that declare a pydantic plugin."""
    directory.mkdir()
    (directory / "spy_plugin.py").write_text(SPY, encoding="utf-8")
    info = directory / "spy_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spy-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nspy = spy_plugin:plugin\n")
    return directory


def test_the_spy_is_a_plugin_pydantic_loads(tmp_path: Path) -> None:
    # The stand-in is real: outside the daemon, pydantic loads it and hands it a model.
    site = spy_distribution(tmp_path / "site")
    spy = tmp_path / "spy.txt"
    subprocess.run(
        [sys.executable, "-c", "import pydantic\nclass M(pydantic.BaseModel):\n    x: int"],
        env={"PYTHONPATH": str(site), "SPY_FILE": str(spy), "PATH": "/usr/bin:/bin"},
        check=True,
        cwd=REPO,
    )
    assert spy.read_text().split() == ["loaded", "validator"]


def test_the_daemon_loads_no_pydantic_plugin(
    daemon_process: Callable[..., DaemonProcess], paths: Paths, tmp_path: Path
) -> None:
    site = spy_distribution(tmp_path / "site")
    spy = tmp_path / "spy.txt"

    proc = daemon_process(PYTHONPATH=str(site), SPY_FILE=str(spy))
    wait_ready(proc)

    assert not spy.exists(), spy.read_text()
