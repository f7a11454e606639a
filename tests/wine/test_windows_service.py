"""install-service under Wine: the daemon's start at sign-in, in HKCU's Run key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.wine.conftest import windows_environ
from tests.wine.winepy import Wine, windows_path

pytestmark = pytest.mark.timeout(120)
READ_RUN_KEY = r"""
import json, winreg
key = winreg.OpenKey(winreg.HKEY_CURRENT_USER, r"Software\Microsoft\Windows\CurrentVersion\Run")
try:
    value = winreg.QueryValueEx(key, "oauth-bridge")[0]
except FileNotFoundError:
    value = None
print(json.dumps(value))
"""


def test_install_service_registers_pythonw_at_sign_in_and_uninstall_removes_it(
    wine: Wine, winpython: Path, tmp_path: Path
) -> None:
    env = windows_environ(tmp_path, "http://127.0.0.1:9")

    def bridge(*argv: str) -> str:
        done = wine.run(winpython, ["-P", "-m", "bridge", *argv], env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def run_value() -> object:
        done = wine.run(winpython, ["-c", READ_RUN_KEY], env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert "would set" in bridge("install-service", "--dry-run")
    assert run_value() is None

    bridge("install-service")
    registered = run_value()
    assert isinstance(registered, str)
    # Windowless, beside the interpreter that ran install-service (no space: no quotes).
    assert registered == windows_path(winpython.with_name("pythonw.exe")) + " -P -m bridge serve"
    assert "nothing to change" in bridge("install-service")

    bridge("install-service", "--uninstall")
    assert run_value() is None
