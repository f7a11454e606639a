"""install-service on Windows as a plan: the Run key's value, written, kept or removed."""

from __future__ import annotations

import argparse
import io

import pytest

from bridge.service.windows_run import (
    VALUE_NAME,
    WHERE,
    Plan,
    execute,
    install_plan,
    plan_for,
    serve_command,
    uninstall_plan,
)

PYTHON = "C:\\Program Files\\Python311\\python.exe"
PYTHONW = "C:\\Program Files\\Python311\\pythonw.exe"
COMMAND = f'"{PYTHONW}" -P -m bridge serve'


class FakeRegistry:
    def __init__(self, **values: str) -> None:
        self.values = dict(values)

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        del self.values[name]


def arguments(**given: bool) -> argparse.Namespace:
    flags = {"uninstall": False, "force": False, "dry_run": False, "socket": False}
    return argparse.Namespace(**{**flags, "sandbox": False, "enable": False, **given})


def test_the_daemon_starts_windowless_and_never_from_the_working_directory() -> None:
    assert serve_command(PYTHON, exists=lambda path: path == PYTHONW) == COMMAND
    # No pythonw.exe beside it (a venv's launcher, say): python.exe itself.
    assert serve_command(PYTHON, exists=lambda path: False) == f'"{PYTHON}" -P -m bridge serve'


def test_install_writes_the_value_once() -> None:
    first = install_plan(COMMAND, None)
    again = install_plan(COMMAND, COMMAND)

    assert first.write == COMMAND
    assert again == Plan(
        notes=(f"{WHERE} already starts the daemon at sign-in: nothing to change",)
    )


def test_a_value_edited_by_hand_is_replaced_only_with_force() -> None:
    edited = f"{COMMAND} --port 9999"

    assert install_plan(COMMAND, edited).refusal is not None
    assert install_plan(COMMAND, edited, force=True).write == COMMAND


def test_uninstall_removes_the_value_or_says_there_is_none() -> None:
    assert uninstall_plan(COMMAND).delete
    assert not uninstall_plan(None).delete


@pytest.mark.parametrize("flag", ["socket", "sandbox"])
def test_systemd_only_options_are_refused(flag: str) -> None:
    plan = plan_for(arguments(**{flag: True}), FakeRegistry(), PYTHON)

    assert plan.refusal is not None
    assert f"--{flag} is for systemd" in plan.refusal


def test_the_executor_applies_a_plan_or_only_prints_it() -> None:
    registry, out, err = FakeRegistry(), io.StringIO(), io.StringIO()
    plan = install_plan(COMMAND, None)

    assert execute(plan, registry, out, err, dry_run=True) == 0
    assert registry.values == {}
    assert f"would set {WHERE} = {COMMAND}" in out.getvalue()

    assert execute(plan, registry, out, err, dry_run=False) == 0
    assert registry.values == {VALUE_NAME: COMMAND}

    assert execute(uninstall_plan(COMMAND), registry, out, err, dry_run=False) == 0
    assert registry.values == {}


def test_a_refusal_changes_nothing_and_exits_2() -> None:
    registry, out, err = FakeRegistry(**{VALUE_NAME: "other"}), io.StringIO(), io.StringIO()

    code = execute(install_plan(COMMAND, "other"), registry, out, err, dry_run=False)

    assert code == 2
    assert registry.values == {VALUE_NAME: "other"}
    assert "--force" in err.getvalue()
