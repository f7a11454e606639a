"""Opening the browser says truthfully whether one was started: $BROWSER, WSL, no screen."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.client.browser import open_url

URL = "https://provider.invalid/authorize?state=s"


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No screen, no $BROWSER, no WSL, and a PATH of only the programs a test puts there."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "WSL_DISTRO_NAME"):
        monkeypatch.delenv(name, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    return bin_dir


def program(bin_dir: Path, name: str, exit_code: int) -> Path:
    """Put a program on PATH that records its argument and exits with ``exit_code``."""
    record = bin_dir / f"{name}.called"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{record}"\nexit {exit_code}\n')
    script.chmod(0o755)
    return record


def test_without_a_screen_nothing_is_opened(bare: Path) -> None:
    assert open_url(URL) is False


def test_under_wsl_wslview_opens_it(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Debian")
    record = program(bare, "wslview", 0)

    assert open_url(URL) is True
    assert record.read_text() == URL


def test_under_wsl_explorer_exiting_1_still_opened_it(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Debian")
    record = program(bare, "explorer.exe", 1)

    assert open_url(URL) is True
    assert record.read_text() == URL


def test_under_wsl_a_failing_wslview_is_not_an_opened_browser(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Debian")
    program(bare, "wslview", 2)

    assert open_url(URL) is False


def test_under_wsl_with_neither_program_nothing_is_opened(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Debian")

    assert open_url(URL) is False


def test_browser_is_honoured_even_without_a_screen(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = program(bare, "my-browser", 0)
    monkeypatch.setenv("BROWSER", str(bare / "my-browser"))

    assert open_url(URL) is True
    assert record.read_text() == URL
