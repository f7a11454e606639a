"""Open a URL in the user's browser, and say truthfully whether one was started."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def under_wsl() -> bool:
    """Say whether this is Linux under Windows (WSL): its browser is Windows'."""
    if os.environ.get("WSL_DISTRO_NAME"):
        return True
    try:
        with open("/proc/version", encoding="utf-8") as handle:
            return "microsoft" in handle.read().lower()
    except OSError:
        return False


def open_url(url: str) -> bool:
    """Open ``url`` in a browser; True only when one was started."""
    if os.environ.get("BROWSER"):
        return _webbrowser(url)  # the user's own choice comes first
    if sys.platform.startswith("linux") and under_wsl():
        return _open_under_wsl(url)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False  # no screen: a text browser would take over this terminal
    return _webbrowser(url)


def _webbrowser(url: str) -> bool:
    import webbrowser

    try:
        return bool(webbrowser.open(url))
    except webbrowser.Error:
        return False


def _open_under_wsl(url: str) -> bool:
    wslview = shutil.which("wslview")
    if wslview is not None:
        return _run([wslview, url]) == 0
    explorer = shutil.which("explorer.exe")
    if explorer is not None:
        # explorer.exe exits 1 when it did open the URL: only a failure to run counts.
        return _run([explorer, url]) in (0, 1)
    return False


def _run(argv: list[str]) -> int | None:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=15, check=False
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return None
