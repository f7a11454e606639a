"""The one rule of where the browser is: a table of places, and the callback each one takes."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from bridge.client.reach import (
    CALLBACK_VARIABLE,
    PROC_VERSION,
    WSL_INTEROP_BINFMT,
    Files,
    Verdict,
    callback_for,
    configured_callback,
    decide,
    under_wsl,
)
from bridge.errors import UsageError

SSH = {"SSH_CONNECTION": "10.0.0.2 50000 10.0.0.1 22", "SSH_TTY": "/dev/pts/0"}
VSCODE_REMOTE = {
    "BROWSER": "/home/u/.vscode-server/bin/abc/bin/helpers/browser.sh",
    "VSCODE_IPC_HOOK_CLI": "/run/user/1000/vscode-ipc-1.sock",
    "TERM_PROGRAM": "vscode",
}
WSL_KERNEL = "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1c602f52c2e4) #1 SMP\n"
DOCKERENV = {"/.dockerenv": ""}


class Case(NamedTuple):
    environ: dict[str, str]
    platform: str
    files: dict[str, str]
    callback: str
    environment: str
    can_open_browser: bool


CASES = {
    "local X11 desktop": Case({"DISPLAY": ":0"}, "linux", {}, "loopback", "local", True),
    "local Wayland desktop": Case(
        {"WAYLAND_DISPLAY": "wayland-0"}, "linux", {}, "loopback", "local", True
    ),
    "local VS Code terminal (no BROWSER helper)": Case(
        {"DISPLAY": ":0", "TERM_PROGRAM": "vscode"}, "linux", {}, "loopback", "local", True
    ),
    "SSH without BROWSER": Case(SSH, "linux", {}, "hosted", "ssh", False),
    "SSH with X forwarding, still without BROWSER": Case(
        {**SSH, "DISPLAY": "localhost:10.0"}, "linux", {}, "hosted", "ssh", False
    ),
    "SSH seen by SSH_CLIENT alone": Case(
        {"SSH_CLIENT": "10.0.0.2 50000 22"}, "linux", {}, "hosted", "ssh", False
    ),
    "SSH with an empty BROWSER": Case({**SSH, "BROWSER": ""}, "linux", {}, "hosted", "ssh", False),
    "SSH with a BROWSER helper": Case(
        {**SSH, "BROWSER": "my-forwarding-helper"}, "linux", {}, "loopback", "ssh", True
    ),
    "VS Code Remote-SSH": Case(
        {**SSH, **VSCODE_REMOTE}, "linux", {}, "loopback", "vscode-remote", True
    ),
    "VS Code dev container": Case(
        {**VSCODE_REMOTE, "REMOTE_CONTAINERS": "true"},
        "linux",
        DOCKERENV,
        "loopback",
        "vscode-remote",
        True,
    ),
    "Codespace in VS Code, BROWSER helper and all": Case(
        {**VSCODE_REMOTE, "CODESPACES": "true"},
        "linux",
        DOCKERENV,
        "hosted",
        "codespace",
        True,
    ),
    "Codespace over gh codespace ssh": Case(
        {**SSH, "CODESPACES": "true"}, "linux", DOCKERENV, "hosted", "codespace", False
    ),
    "CODESPACES=false is no codespace": Case(
        {"CODESPACES": "false", "DISPLAY": ":0"}, "linux", {}, "loopback", "local", True
    ),
    "WSL2 by its variables": Case(
        {"WSL_DISTRO_NAME": "Ubuntu", "WSL_INTEROP": "/run/WSL/8_interop"},
        "linux",
        {PROC_VERSION: WSL_KERNEL},
        "loopback",
        "wsl",
        True,
    ),
    "WSL by WSL_INTEROP alone": Case(
        {"WSL_INTEROP": "/run/WSL/8_interop"}, "linux", {}, "loopback", "wsl", True
    ),
    "WSL by its binfmt interop file (a sudo that dropped the variables)": Case(
        {},
        "linux",
        {PROC_VERSION: WSL_KERNEL, WSL_INTEROP_BINFMT: "enabled\ninterpreter /init\n"},
        "loopback",
        "wsl",
        True,
    ),
    "WSLg's display is still WSL": Case(
        {"WSL_DISTRO_NAME": "Ubuntu", "DISPLAY": ":0"}, "linux", {}, "loopback", "wsl", True
    ),
    "Docker Desktop: a WSL kernel, no interop, a container": Case(
        {}, "linux", {**DOCKERENV, PROC_VERSION: WSL_KERNEL}, "hosted", "container", False
    ),
    "a WSL kernel alone, no interop, no container": Case(
        {}, "linux", {PROC_VERSION: WSL_KERNEL}, "hosted", "headless", False
    ),
    "Docker container without a display": Case(
        {}, "linux", DOCKERENV, "hosted", "container", False
    ),
    "Podman container without a display": Case(
        {}, "linux", {"/run/.containerenv": ""}, "hosted", "container", False
    ),
    "container with a display (as the test machines may be)": Case(
        {"DISPLAY": ":99"}, "linux", DOCKERENV, "loopback", "container", True
    ),
    "container with a Wayland display": Case(
        {"WAYLAND_DISPLAY": "wayland-0"}, "linux", DOCKERENV, "loopback", "container", True
    ),
    "container with a BROWSER command": Case(
        {"BROWSER": "firefox"}, "linux", DOCKERENV, "loopback", "container", True
    ),
    "headless Linux": Case({}, "linux", {}, "hosted", "headless", False),
    "headless FreeBSD": Case({}, "freebsd14", {}, "hosted", "headless", False),
    "macOS": Case({}, "darwin", {}, "loopback", "macos", True),
    "macOS over SSH": Case(SSH, "darwin", {}, "hosted", "ssh", False),
    "Windows": Case({}, "win32", {}, "loopback", "windows", True),
    "WSL variables mean nothing off Linux": Case(
        {"WSL_DISTRO_NAME": "Ubuntu"}, "darwin", {}, "loopback", "macos", True
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_place_takes_its_callback(case: Case) -> None:
    verdict = decide(case.environ, platform=case.platform, files=Files(case.files))

    assert (case.callback, case.environment, case.can_open_browser) == (
        verdict.callback,
        verdict.environment,
        verdict.can_open_browser,
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_verdict_says_why_in_one_sentence(case: Case) -> None:
    verdict = decide(case.environ, platform=case.platform, files=Files(case.files))

    assert verdict.why
    assert "\n" not in verdict.why
    assert not verdict.why.endswith(".")  # it goes inside doctor's "hosted (...)"


def test_an_ssh_session_says_the_browser_is_elsewhere() -> None:
    verdict = decide(SSH, platform="linux", files=Files({}))

    assert verdict == Verdict(
        "hosted",
        "an SSH session without a BROWSER helper: the browser runs on another machine",
        "ssh",
        can_open_browser=False,
    )


def test_docker_desktop_is_named_as_not_wsl() -> None:
    verdict = decide({}, platform="linux", files=Files({**DOCKERENV, PROC_VERSION: WSL_KERNEL}))

    assert "Docker Desktop" in verdict.why
    assert "WSL" not in decide({}, platform="linux", files=Files(DOCKERENV)).why


def test_wsl_names_its_evidence() -> None:
    by_variable = decide({"WSL_DISTRO_NAME": "Ubuntu"}, platform="linux", files=Files({}))
    by_file = decide({}, platform="linux", files=Files({WSL_INTEROP_BINFMT: "enabled"}))

    assert "WSL_DISTRO_NAME" in by_variable.why
    assert "WSLInterop" in by_file.why


@pytest.mark.parametrize(
    ("environ", "files", "expected"),
    [
        ({"WSL_DISTRO_NAME": "Debian"}, {}, True),
        ({"WSL_INTEROP": "/run/WSL/1_interop"}, {}, True),
        ({}, {WSL_INTEROP_BINFMT: "enabled"}, True),
        ({}, {PROC_VERSION: WSL_KERNEL}, False),  # Docker Desktop's kernel
        ({"WSL_DISTRO_NAME": "  "}, {}, False),
        ({}, {}, False),
    ],
)
def test_under_wsl_takes_only_wsls_own_evidence(
    environ: dict[str, str], files: dict[str, str], expected: bool
) -> None:
    assert under_wsl(environ, files=Files(files)) is expected


def test_the_real_files_are_read_when_none_are_planted(tmp_path: Path) -> None:
    present = tmp_path / "version"
    present.write_text("Linux version 6.1", encoding="utf-8")

    assert Files().exists(str(present)) is True
    assert Files().read(str(present)) == "Linux version 6.1"
    assert Files().exists(str(tmp_path / "absent")) is False
    assert Files().read(str(tmp_path / "absent")) == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("auto", "auto"),
        ("loopback", "loopback"),
        ("hosted", "hosted"),
        (" Hosted\n", "hosted"),
    ],
)
def test_oauth_bridge_callback_is_read(value: str | None, expected: str | None) -> None:
    environ = {} if value is None else {CALLBACK_VARIABLE: value}

    assert configured_callback(environ) == expected


@pytest.mark.parametrize("value", ["remote", "loop back", "1"])
def test_a_bad_oauth_bridge_callback_is_a_usage_error_naming_the_variable(value: str) -> None:
    with pytest.raises(UsageError) as raised:
        configured_callback({CALLBACK_VARIABLE: value})

    assert "OAUTH_BRIDGE_CALLBACK" in raised.value.message
    assert repr(value) in raised.value.message


@pytest.mark.parametrize(
    ("choice", "verdict_callback", "expected"),
    [
        (None, "hosted", "hosted"),
        ("auto", "hosted", "hosted"),
        ("auto", "loopback", "loopback"),
        ("loopback", "hosted", "loopback"),
        ("hosted", "loopback", "hosted"),
    ],
)
def test_a_choice_other_than_auto_overrides_the_verdict(
    choice: str | None, verdict_callback: str, expected: str
) -> None:
    environ = {"DISPLAY": ":0"} if verdict_callback == "loopback" else {}
    verdict = decide(environ, platform="linux", files=Files({}))
    assert verdict.callback == verdict_callback
    parsed = configured_callback({CALLBACK_VARIABLE: choice} if choice else {})

    assert callback_for(parsed, verdict) == expected
