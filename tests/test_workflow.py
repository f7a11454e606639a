"""The GitHub workflow names test files that exist: a renamed test must not drop out of it."""

from __future__ import annotations

import re

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def test_every_test_file_the_workflow_names_exists() -> None:
    named = re.findall(r"tests/[\w/]+\.py", WORKFLOW.read_text(encoding="utf-8"))
    assert named, "the workflow names no test file"
    assert [path for path in named if not (REPO / path).is_file()] == []


def job(text: str, name: str) -> str:
    """The lines of one job: from ``  name:`` to the next job (two spaces in)."""
    match = re.search(rf"^  {name}:\n(.*?)(?=^  \S|\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no job {name}"
    return match.group(1)


def test_each_other_runner_ends_with_a_whole_login_on_its_system() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    for name in ("macos", "windows"):
        steps = job(text, name)
        assert f"runs-on: {name}-latest" in steps
        assert steps.rstrip().endswith("- run: python -m bridge demo"), name
