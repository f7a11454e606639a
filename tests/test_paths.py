"""The runtime and state dirs: nothing another user controls lies on the way to them.

The tests run as root (CI does): another user's files are made with os.chown to a uid
that is nobody's here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.errors import UnsafeRuntimeDir
from bridge.paths import Paths, check_private_dir, ensure_private_dir, ensure_state_dir
from tests.client.conftest import serve_pids
from tests.conftest import REPO, daemon_environ

OTHER_UID = 12345  # nobody's uid on this machine: "another user"


def sticky_shared(tmp_path: Path) -> Path:
    """A directory like /tmp: anyone may create in it, only the owner of a name may remove it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


def theirs_link(link: Path, target: Path) -> Path:
    """A symlink at ``link`` to ``target``, owned by another user (who may re-point it)."""
    link.symlink_to(target)
    os.chown(link, OTHER_UID, OTHER_UID, follow_symlinks=False)
    return link


def mine(path: Path) -> Path:
    path.mkdir(mode=0o700)
    return path


def test_a_runtime_dir_reached_through_another_users_symlink_is_refused(tmp_path: Path) -> None:
    # The link points at a directory of ours, so each directory on the way is ours: only
    # looking at the link itself shows that another user chooses where this path leads.
    target = mine(tmp_path / "mine")
    link = theirs_link(sticky_shared(tmp_path) / "link", target)
    runtime = link / "run"

    with pytest.raises(UnsafeRuntimeDir) as refused:
        ensure_private_dir(runtime)

    assert f"{link}, a symlink owned by uid {OTHER_UID}" in refused.value.message
    assert not (target / "run").exists()


def test_a_symlink_of_ours_or_roots_on_the_way_is_fine(tmp_path: Path) -> None:
    # As /var/run -> /run is: a link its owner (root, or we) alone may change.
    target = mine(tmp_path / "mine")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert link.lstat().st_uid in (0, os.getuid())

    ensure_private_dir(link / "run")

    assert (target / "run").is_dir()


def test_a_link_of_ours_into_another_users_directory_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    mine(theirs / "inner")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    link = tmp_path / "link"
    link.symlink_to(theirs / "inner")
    runtime = mine(theirs / "inner" / "run")

    with pytest.raises(UnsafeRuntimeDir) as refused:
        check_private_dir(link / "run")

    assert f"owned by uid {OTHER_UID}" in refused.value.message
    assert runtime.is_dir()


def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        env=env,
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_cli_refuses_a_runtime_dir_through_another_users_symlink_in_one_line(
    paths: Paths, tmp_path: Path
) -> None:
    link = theirs_link(sticky_shared(tmp_path) / "link", mine(tmp_path / "mine"))
    env = daemon_environ(paths, "http://127.0.0.1:9", OAUTH_BRIDGE_RUNTIME_DIR=str(link / "run"))
    paths.config_file.write_text("", encoding="utf-8")

    try:
        result = run_cli(env, "expect", "--provider", "github", "--state", "-", stdin="s\n")
    finally:
        # Were the link followed, a daemon would have been started there: stop it.
        for pid in serve_pids(paths._replace(runtime_dir=link / "run")):
            os.kill(pid, signal.SIGKILL)

    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"a symlink owned by uid {OTHER_UID}" in result.stderr
    assert not (tmp_path / "mine" / "run").exists()


def fallback_environ(paths: Paths, temp: Path) -> dict[str, str]:
    """The CLI's environment with no XDG_RUNTIME_DIR: platformdirs falls back to the temp dir."""
    env = daemon_environ(paths, "http://127.0.0.1:9", TMPDIR=str(temp))
    for name in ("XDG_RUNTIME_DIR", "OAUTH_BRIDGE_RUNTIME_DIR", "TEMP", "TMP"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("squat", ["directory", "symlink"])
def test_another_users_fallback_runtime_dir_is_one_line_not_a_traceback(
    paths: Paths, tmp_path: Path, squat: str
) -> None:
    temp = sticky_shared(tmp_path)
    # What platformdirs falls back to: runtime-<uid> in the temp dir, a name anyone may take.
    squatted = temp / f"runtime-{os.getuid()}"
    if squat == "directory":
        squatted.mkdir(mode=0o700)
        os.chown(squatted, OTHER_UID, OTHER_UID)
    else:
        theirs_link(squatted, mine(tmp_path / "decoy"))
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("", encoding="utf-8")

    if Path(f"/run/user/{os.getuid()}").is_dir():
        # platformdirs would take it rather than the temp dir: hide it, in a mount
        # namespace of this command's own (the tests run as root, as CI does).
        result = subprocess.run(
            [
                "unshare",
                "--mount",
                "--fork",
                "sh",
                "-c",
                'mount -t tmpfs tmpfs /run/user && exec "$@"',
                "sh",
                sys.executable,
                "-m",
                "bridge",
                "status",
            ],
            env=fallback_environ(paths, temp),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    else:
        result = run_cli(fallback_environ(paths, temp), "status")

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("oauth-bridge: ")
    assert str(squatted) in line
    assert "XDG_RUNTIME_DIR" in line
    assert "OAUTH_BRIDGE_RUNTIME_DIR" in line


def test_a_state_dir_reached_through_another_users_symlink_is_refused_before_mkdir(
    tmp_path: Path,
) -> None:
    target = mine(tmp_path / "mine")
    link = theirs_link(sticky_shared(tmp_path) / "link", target)

    with pytest.raises(UnsafeRuntimeDir) as refused:
        ensure_state_dir(link / "state")

    assert f"a symlink owned by uid {OTHER_UID}" in refused.value.message
    assert not (target / "state").exists()
