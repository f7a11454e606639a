"""Opening the browser says truthfully whether one was started, and never blocks for long."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.client.browser import CHECK_SECONDS, Launch, launches, open_url, open_url_async
from bridge.client.reach import Files, decide
from tests.conftest import REPO

URL = "https://provider.invalid/authorize?state=s&x=1"
# Everything the rule reads from the environment: a test sets only what it means.
PLACE_VARIABLES = (
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "BROWSER",
    "WSL_DISTRO_NAME",
    "WSL_INTEROP",
    "SSH_CONNECTION",
    "SSH_CLIENT",
    "SSH_TTY",
    "CODESPACES",
    "VSCODE_IPC_HOOK_CLI",
    "TERM_PROGRAM",
)
# Well past CHECK_SECONDS, and well short of the 20 s a foreground browser used to cost.
PROMPTLY = CHECK_SECONDS + 1.5


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No screen, no $BROWSER, no WSL, and a PATH of only the programs a test puts there."""
    for name in PLACE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    return bin_dir


def program(bin_dir: Path, name: str, exit_code: int, *, then: str = "") -> Path:
    """Put a program on PATH that records its argument, runs ``then`` and exits."""
    record = bin_dir / f"{name}.called"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{record}"\n{then}\nexit {exit_code}\n')
    script.chmod(0o755)
    return record


def recorded(record: Path, *, within: float = 10.0) -> str:
    """Return what a started program recorded, once it has (it may still run, detached)."""
    deadline = time.monotonic() + within
    while not record.exists() or not record.read_text():
        assert time.monotonic() < deadline, f"{record.name} never ran"
        time.sleep(0.01)
    return record.read_text()


@pytest.fixture
def foreground(bare: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A $BROWSER that stays in the foreground until the test ends it (as firefox may)."""
    never_written = tmp_path / "never-written"
    os.mkfifo(never_written)
    pid_file = tmp_path / "foreground-browser.pid"
    record = program(
        bare, "foreground-browser", 0, then=f'echo $$ > "{pid_file}"\nread _ < "{never_written}"'
    )
    yield bare / "foreground-browser", record
    os.kill(int(recorded(pid_file)), signal.SIGTERM)  # its own session: ours to end by id


def test_without_a_screen_nothing_is_opened(bare: Path) -> None:
    assert open_url(URL) is False


def test_under_wsl_wslview_opens_it(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Debian")
    record = program(bare, "wslview", 0)

    assert open_url(URL) is True
    assert recorded(record) == URL


def test_under_wsl_explorer_exiting_1_still_opened_it(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Debian")
    record = program(bare, "explorer.exe", 1)

    assert open_url(URL) is True
    assert recorded(record) == URL


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
    assert recorded(record) == URL


def test_a_failing_browser_command_is_not_an_opened_browser(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program(bare, "broken-browser", 3)
    monkeypatch.setenv("BROWSER", "broken-browser")

    assert open_url(URL) is False


def test_the_next_browser_command_is_tried_when_one_is_missing(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = program(bare, "second-browser", 0)
    monkeypatch.setenv("BROWSER", f"not-installed-anywhere{os.pathsep}second-browser")

    assert open_url(URL) is True
    assert recorded(record) == URL


def test_a_browser_that_stays_in_the_foreground_does_not_hold_the_caller(
    monkeypatch: pytest.MonkeyPatch, foreground: tuple[Path, Path]
) -> None:
    command, record = foreground
    monkeypatch.setenv("BROWSER", str(command))

    started = time.monotonic()
    opened = open_url(URL)
    took = time.monotonic() - started

    assert opened is True
    assert took < PROMPTLY
    assert recorded(record) == URL


async def test_the_async_twin_does_not_hold_the_caller_either(
    monkeypatch: pytest.MonkeyPatch, foreground: tuple[Path, Path]
) -> None:
    command, record = foreground
    monkeypatch.setenv("BROWSER", str(command))

    started = time.monotonic()
    opened = await open_url_async(URL)
    took = time.monotonic() - started

    assert opened is True
    assert took < PROMPTLY
    assert recorded(record) == URL


async def test_the_async_twin_says_when_nothing_opened(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program(bare, "broken-browser", 3)
    monkeypatch.setenv("BROWSER", "broken-browser")

    assert await open_url_async(URL) is False


def plan(environ: dict[str, str], platform: str = "linux") -> list[Launch]:
    return launches(URL, environ, decide(environ, platform=platform, files=Files({})))


@pytest.mark.parametrize(
    ("environ", "platform", "expected"),
    [
        ({}, "linux", []),
        ({"SSH_CONNECTION": "10.0.0.2 1 10.0.0.1 22", "DISPLAY": ":10"}, "linux", []),
        (
            {"BROWSER": "firefox"},
            "linux",
            [Launch(("firefox", URL))],
        ),
        (
            {"BROWSER": f"my-browser --new-tab '%s'{os.pathsep}{os.pathsep}lynx"},
            "linux",
            [Launch(("my-browser", "--new-tab", URL)), Launch(("lynx", URL))],
        ),
        ({"BROWSER": "unbalanced 'quote"}, "linux", []),
        (
            {"WSL_DISTRO_NAME": "Ubuntu"},
            "linux",
            [Launch(("wslview", URL)), Launch(("explorer.exe", URL), frozenset({0, 1}))],
        ),
        ({}, "darwin", [Launch(("open", URL))]),
        ({}, "win32", [Launch(("rundll32", "url.dll,FileProtocolHandler", URL))]),
        (
            {"DISPLAY": ":0"},
            "linux",
            [
                Launch(("xdg-open", URL)),
                Launch(("gio", "open", URL)),
                Launch(("x-www-browser", URL)),
            ],
        ),
    ],
    ids=[
        "headless",
        "ssh",
        "browser",
        "browser list",
        "bad browser",
        "wsl",
        "macos",
        "windows",
        "desktop",
    ],
)
def test_each_place_has_its_commands(
    environ: dict[str, str], platform: str, expected: list[Launch]
) -> None:
    assert plan(environ, platform) == expected


def test_open_url_takes_the_wsl_path_only_on_wsls_own_evidence(tmp_path: Path) -> None:
    """Under a mount namespace, /proc/version says Docker Desktop's WSL kernel; only
    WSL_DISTRO_NAME sends the URL to Windows' browser."""
    assert os.geteuid() == 0, (
        "this test needs root: it bind-mounts a fake /proc/version in a mount namespace "
        "(unshare --mount), as CI runs it; run it as root"
    )
    for tool in ("unshare", "mount"):
        assert shutil.which(tool), f"this test needs {tool} (util-linux)"
    fake_version = tmp_path / "version"
    fake_version.write_text(
        "Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1c602f52c2e4) #1 SMP\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = program(bin_dir, "wslview", 0)

    def open_under_fake_kernel(**extra: str) -> list[str]:
        env = {k: v for k, v in os.environ.items() if k not in PLACE_VARIABLES}
        env.update(PATH=f"{bin_dir}{os.pathsep}/usr/bin:/bin", **extra)
        # A real WSL host's interop entry is hidden too: only /proc/version speaks.
        inside = (
            'mount --bind "$1" /proc/version\n'
            "if [ -d /proc/sys/fs/binfmt_misc ]; then\n"
            "  mount -t tmpfs tmpfs /proc/sys/fs/binfmt_misc\n"
            "fi\n"
            'exec "$2" -c "$3" "$4"\n'
        )
        code = (
            "import sys\nfrom bridge.client.browser import open_url\n"
            "print(open('/proc/version').read().strip())\nprint(open_url(sys.argv[1]))\n"
        )
        argv = [str(fake_version), sys.executable, code, URL]  # $1..$4 of ``inside``
        result = subprocess.run(
            ["unshare", "--mount", "--fork", "sh", "-ec", inside, "sh", *argv],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"the mount namespace failed: {result.stderr}"
        return result.stdout.splitlines()

    docker_desktop = open_under_fake_kernel()
    assert not record.exists()
    wsl = open_under_fake_kernel(WSL_DISTRO_NAME="Ubuntu")

    assert docker_desktop == [fake_version.read_text().strip(), "False"]
    assert wsl == [fake_version.read_text().strip(), "True"]
    assert recorded(record) == URL
