"""The docs stay true to the code: config.example.toml, README's commands, CHANGELOG."""

from __future__ import annotations

import re
import tomllib

from bridge import __version__
from bridge.daemon.config import API_KEY_ENV, BEARER_TOKEN_ENV, ENVIRONMENT, Settings
from tests.conftest import REPO

EXAMPLE = (REPO / "config.example.toml").read_text(encoding="utf-8")


def test_the_example_config_holds_the_defaults() -> None:
    assert Settings.model_validate(tomllib.loads(EXAMPLE)) == Settings()


def test_the_example_config_names_every_key_and_its_environment_variable() -> None:
    for key in Settings.model_fields:
        assert re.search(rf"^#? ?{key} = ", EXAMPLE, re.MULTILINE), f"{key} is not in the example"
    for variable in [*ENVIRONMENT.values(), API_KEY_ENV, BEARER_TOKEN_ENV]:
        assert variable in EXAMPLE, f"{variable} is not in the example"


def test_the_readme_quick_start_is_two_commands_that_exist() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", quick_start, re.DOTALL)

    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/oauth-bridge demo",
        "./scripts/test",
    ]
    assert (REPO / "scripts" / "test").stat().st_mode & 0o111
    assert "./scripts/test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_the_changelog_has_an_unreleased_section_and_the_version_is_set() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)
