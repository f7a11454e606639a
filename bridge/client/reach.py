"""Decide where the browser is: can it reach this machine's loopback, or must a login go hosted?

One rule, read by ``login``, the Python API, ``browser.open_url`` and ``doctor``. It is a
pure function of the environment and a few files, walked as google-auth's ``default()``
walks its credential sources: each detector below either recognises the place the tool
runs in and returns a verdict, or passes to the next one. The first verdict wins, so the
order of ``DETECTORS`` is the rule.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from bridge.errors import UsageError

Callback = Literal["loopback", "hosted"]
Choice = Literal["auto", "loopback", "hosted"]

CALLBACK_VARIABLE = "OAUTH_BRIDGE_CALLBACK"
CHOICES: dict[str, Choice] = {"auto": "auto", "loopback": "loopback", "hosted": "hosted"}

PROC_VERSION = "/proc/version"
WSL_INTEROP_BINFMT = "/proc/sys/fs/binfmt_misc/WSLInterop"
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")  # Docker's, Podman's


@dataclass(frozen=True, slots=True)
class Files:
    """Read the few files the rule looks at; ``Files({path: text})`` stands in for them in tests."""

    planted: Mapping[str, str] | None = None

    def exists(self, path: str) -> bool:
        if self.planted is not None:
            return path in self.planted
        return os.path.exists(path)

    def read(self, path: str) -> str:
        """Return the file's start, or '' when it is absent or unreadable."""
        if self.planted is not None:
            return self.planted.get(path, "")
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read(4096)
        except OSError:
            return ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Which callback a login takes here, why (one sentence for people), and where this is."""

    callback: Callback
    why: str
    # local, ssh, vscode-remote, codespace, wsl, container, headless, macos or windows
    environment: str
    can_open_browser: bool


@dataclass(frozen=True, slots=True)
class Place:
    """What the detectors look at: the environment, the platform, the files."""

    environ: Mapping[str, str]
    platform: str
    files: Files

    def has(self, *names: str) -> bool:
        return any(self.environ.get(name, "").strip() for name in names)

    @property
    def browser_command(self) -> bool:
        return self.has("BROWSER")

    @property
    def display(self) -> bool:
        return self.has("DISPLAY", "WAYLAND_DISPLAY")

    @property
    def linux(self) -> bool:
        return self.platform.startswith("linux")


def decide(
    environ: Mapping[str, str], *, platform: str = sys.platform, files: Files | None = None
) -> Verdict:
    """Say which callback a login should take where ``environ`` is, and why."""
    place = Place(environ, platform, files if files is not None else Files())
    for detector in DETECTORS:
        verdict = detector(place)
        if verdict is not None:
            return verdict
    raise AssertionError("the last detector always decides")  # pragma: no cover


def under_wsl(environ: Mapping[str, str], *, files: Files | None = None) -> bool:
    """Say whether this is Linux under Windows (WSL), whose browser is Windows'."""
    return wsl_evidence(Place(environ, "linux", files if files is not None else Files())) != ""


def wsl_evidence(place: Place) -> str:
    """Name what shows this is WSL, or return '' when nothing does.

    Docker Desktop's containers run on a WSL 2 kernel too, so "microsoft" in
    /proc/version is no evidence: only what WSL itself sets up for its own distros
    counts (its variables, and the binfmt entry that runs Windows programs).
    """
    if not place.linux:
        return ""
    for name in ("WSL_DISTRO_NAME", "WSL_INTEROP"):
        if place.has(name):
            return f"{name} is set"
    if place.files.exists(WSL_INTEROP_BINFMT):
        return "Windows programs run from here (WSLInterop)"
    return ""


def in_container(place: Place) -> bool:
    return any(place.files.exists(marker) for marker in CONTAINER_MARKERS)


def vscode(place: Place) -> bool:
    return place.has("VSCODE_IPC_HOOK_CLI") or place.environ.get("TERM_PROGRAM") == "vscode"


def ssh(place: Place) -> bool:
    return place.has("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")


def codespace(place: Place) -> Verdict | None:
    # Its forwarded ports sit behind GitHub's sign-in on another host: even the BROWSER
    # helper it sets opens a browser that cannot reach this loopback.
    if place.environ.get("CODESPACES", "").strip().lower() != "true":
        return None
    return Verdict(
        "hosted",
        "a GitHub codespace: its forwarded ports sit behind GitHub's sign-in on another "
        "host, so the browser cannot reach this machine's loopback",
        "codespace",
        can_open_browser=place.browser_command,
    )


def browser_command(place: Place) -> Verdict | None:
    # The user's (or VS Code Remote's) own command comes first: VS Code's helper opens
    # the browser on the user's machine and VS Code forwards the port it is sent to.
    if not place.browser_command:
        return None
    if vscode(place):
        return Verdict(
            "loopback",
            "VS Code Remote's BROWSER helper opens your browser, and VS Code forwards the port",
            "vscode-remote",
            can_open_browser=True,
        )
    return Verdict(
        "loopback",
        "a BROWSER command is set: the browser it opens is taken to reach this machine",
        place_name(place),
        can_open_browser=True,
    )


def ssh_session(place: Place) -> Verdict | None:
    if not ssh(place):
        return None
    return Verdict(
        "hosted",
        "an SSH session without a BROWSER helper: the browser runs on another machine",
        "ssh",
        can_open_browser=False,
    )


def macos_or_windows(place: Place) -> Verdict | None:
    name = desktop_platform(place.platform)
    if name is None:
        return None
    label = {"macos": "macOS", "windows": "Windows"}[name]
    return Verdict(
        "loopback", f"{label}: the browser runs on this machine", name, can_open_browser=True
    )


def wsl(place: Place) -> Verdict | None:
    evidence = wsl_evidence(place)
    if not evidence:
        return None
    return Verdict(
        "loopback",
        f"WSL ({evidence}): Windows' browser opens, and WSL forwards this loopback to Windows",
        "wsl",
        can_open_browser=True,
    )


def container(place: Place) -> Verdict | None:
    # The marker alone decides nothing: the test machines are containers too, and one
    # with a display opens its browser inside it, where the loopback is the same.
    if not in_container(place) or place.display:
        return None
    kernel = (
        " (on Docker Desktop's kernel, which is not WSL)"
        if "microsoft" in place.files.read(PROC_VERSION).lower()
        else ""
    )
    return Verdict(
        "hosted",
        f"a container{kernel} without a display or a BROWSER helper: the browser runs outside it",
        "container",
        can_open_browser=False,
    )


def display(place: Place) -> Verdict:
    if not place.display:
        return Verdict(
            "hosted",
            "no display (DISPLAY, WAYLAND_DISPLAY) and no BROWSER helper: no browser can open here",
            "headless",
            can_open_browser=False,
        )
    return Verdict(
        "loopback",
        "a graphical session: the browser runs on this machine",
        place_name(place),
        can_open_browser=True,
    )


DETECTORS: tuple[Callable[[Place], Verdict | None], ...] = (
    codespace,
    browser_command,
    ssh_session,
    macos_or_windows,
    wsl,
    container,
    display,
)


def desktop_platform(platform: str) -> Literal["macos", "windows"] | None:
    if platform == "darwin":
        return "macos"
    if platform.startswith(("win32", "cygwin", "msys")):
        return "windows"
    return None


def place_name(place: Place) -> str:
    """Name the place where a browser does open (its name only: the verdict is elsewhere)."""
    if ssh(place):
        return "ssh"
    desktop = desktop_platform(place.platform)
    if desktop is not None:
        return desktop
    if wsl_evidence(place):
        return "wsl"
    if in_container(place):
        return "container"
    return "local" if place.display else "headless"


def parse_callback(value: str, *, source: str) -> Choice:
    """Read a callback choice; a bad one is a usage error naming where it came from."""
    choice = CHOICES.get(value.strip().lower())
    if choice is None:
        raise UsageError(f"{source} must be auto, loopback or hosted, not {value!r}")
    return choice


def configured_callback(environ: Mapping[str, str]) -> Choice | None:
    """Return the callback ``OAUTH_BRIDGE_CALLBACK`` asks for, or None when it is unset."""
    value = environ.get(CALLBACK_VARIABLE, "")
    if not value.strip():
        return None
    return parse_callback(value, source=CALLBACK_VARIABLE)


def callback_for(choice: Choice | None, verdict: Verdict) -> Callback:
    """Settle a choice: 'auto' (or none) takes the verdict, anything else is kept."""
    if choice is None or choice == "auto":
        return verdict.callback
    return choice
