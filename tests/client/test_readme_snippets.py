"""The README's snippets for tool authors run as written, against a daemon and the double."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.paths import Paths
from tests.client.test_login import CONSENTING_BROWSER, consent
from tests.conftest import REPO, DaemonProcess, require_tool, wait_ready
from tests.control_plane_double import ControlPlaneDouble

README = (REPO / "README.md").read_text(encoding="utf-8")


def snippet(heading: str, language: str) -> str:
    """Return the first ``language`` block under ``### heading`` in the README."""
    section = README.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    found = re.search(rf"```{language}\n(.+?)\n```", section, re.DOTALL)
    assert found is not None, f"no {language} block under {heading!r}"
    return found.group(1)


@pytest.fixture
async def environment(
    daemon_process: Callable[..., DaemonProcess],
    control_plane: ControlPlaneDouble,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> dict[str, str]:
    """A running daemon the double's github provider allows, and a consenting browser."""
    info = await asyncio.to_thread(wait_ready, daemon_process())
    control_plane.allow("github", f"{info['url']}/callback/github")
    script = tmp_path / "browser.py"
    script.write_text(CONSENTING_BROWSER, encoding="utf-8")
    return {
        **cli_env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{cli_env.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "DISPLAY": ":99",
        "BROWSER": f"{sys.executable} {script} %s {tmp_path / 'landed.txt'} code=c-readme",
    }


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


async def test_the_one_command_snippet_connects(environment: dict[str, str], paths: Paths) -> None:
    result = await asyncio.to_thread(run, ["sh", "-c", snippet("One command", "sh")], environment)

    assert result.stdout == "connected; the token is in .result.token\n", result.stderr


async def test_the_python_snippet_connects(environment: dict[str, str]) -> None:
    code = snippet("Python", "python")

    result = await asyncio.to_thread(run, [sys.executable, "-c", code], environment)

    assert result.stdout == "connected; got a token: True\n", result.stderr


def follow(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run a snippet that prints 'sign in at: URL' and then waits: consent, read the end."""
    process = subprocess.Popen(
        argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    found = re.search(r"sign in at:? (\S+)", first)
    if found is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"no address printed: {first!r} {err}")
    consent(found.group(1))
    out, err = process.communicate(timeout=60)
    return process.returncode, first + out, err


async def test_the_socket_shell_snippet_connects(environment: dict[str, str]) -> None:
    require_tool("jq", "jq")
    require_tool("curl", "curl")

    code, out, err = await asyncio.to_thread(
        follow, ["sh", "-c", snippet("Over the control socket (any language)", "sh")], environment
    )

    assert (code, out.splitlines()[-1]) == (0, "succeeded"), err


async def test_the_node_snippet_connects(environment: dict[str, str]) -> None:
    node = require_tool("node", "nodejs")
    code = snippet("Over the control socket (any language)", "js") + (
        '\nconnect("github", ["repo"]).then((login) => console.log(login.status, !!login.result.token));\n'
    )

    status, out, err = await asyncio.to_thread(follow, [node, "-e", code], environment)

    assert (status, out.splitlines()[-1]) == (0, "succeeded true"), err
