r"""``oauth-bridge install-service`` on Windows: start the daemon at sign-in (HKCU ... \Run).

A plan first (STYLE 33): what to write under the user's Run key, what to delete, and
what to tell; pure, and tested on Linux. One executor then prints it (``--dry-run``) or
applies it through a registry (winreg on Windows; a dict in the tests). Nothing here
needs an administrator: the key is the user's own, and so is the daemon it starts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Protocol, TextIO

from bridge.errors import ExitCode

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "oauth-bridge"
WHERE = f"HKCU\\{RUN_KEY}\\{VALUE_NAME}"


@dataclass(frozen=True)
class Plan:
    """What install-service (or --uninstall) does to the Run key, and what it says."""

    write: str | None = None  # the command line to store under VALUE_NAME
    delete: bool = False
    notes: tuple[str, ...] = ()
    refusal: str | None = None  # set: nothing is done, and this is said (exit 2)


class Registry(Protocol):
    """The user's Run key, one value of it at a time."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...

    def delete(self, name: str) -> None: ...


def windowless(executable: str, exists: Callable[[str], bool] = os.path.exists) -> str:
    """The interpreter without a console window (pythonw.exe beside python.exe), if any."""
    path = PureWindowsPath(executable)
    if path.name.lower() == "python.exe":
        candidate = str(path.with_name("pythonw.exe"))
        if exists(candidate):
            return candidate
    return executable


def serve_command(executable: str, exists: Callable[[str], bool] = os.path.exists) -> str:
    """The Run value: ``pythonw.exe -P -m bridge serve``, quoted as Windows parses it."""
    return subprocess.list2cmdline([windowless(executable, exists), "-P", "-m", "bridge", "serve"])


def install_plan(command: str, current: str | None, *, force: bool = False) -> Plan:
    """Register ``command`` to run at sign-in; an entry edited by hand stays unless forced."""
    if current == command:
        return Plan(notes=(f"{WHERE} already starts the daemon at sign-in: nothing to change",))
    if current is not None and not force:
        return Plan(
            refusal=f"{WHERE} holds another command ({current}); it was not written by "
            "this install-service: run it again with --force to replace it"
        )
    return Plan(
        write=command,
        notes=(
            f"{WHERE} now starts the daemon at each sign-in: {command}",
            "Until then, any oauth-bridge command starts it when none runs.",
        ),
    )


def uninstall_plan(current: str | None) -> Plan:
    """Remove the entry (whatever it holds: the name is ours)."""
    if current is None:
        return Plan(notes=(f"{WHERE} is not there: nothing to remove",))
    return Plan(
        delete=True,
        notes=(
            f"removed {WHERE}: the daemon no longer starts at sign-in",
            "A daemon running now keeps running: 'oauth-bridge stop' ends it.",
        ),
    )


def execute(plan: Plan, registry: Registry, out: TextIO, err: TextIO, *, dry_run: bool) -> int:
    """Print the plan (--dry-run) or apply it, and return the exit code."""
    if plan.refusal is not None:
        print(f"Refusing: {plan.refusal}.", file=err)
        return ExitCode.USAGE
    if dry_run:
        if plan.write is not None:
            print(f"would set {WHERE} = {plan.write}", file=out)
        if plan.delete:
            print(f"would delete {WHERE}", file=out)
        if plan.write is None and not plan.delete:
            for note in plan.notes:
                print(note, file=out)
        return ExitCode.OK
    if plan.write is not None:
        registry.set(VALUE_NAME, plan.write)
    if plan.delete:
        registry.delete(VALUE_NAME)
    for note in plan.notes:
        print(note, file=out)
    return ExitCode.OK


def plan_for(args: argparse.Namespace, registry: Registry, executable: str) -> Plan:
    """The plan for install-service's arguments on Windows."""
    unsupported = [flag for flag in ("socket", "sandbox") if getattr(args, flag, False)]
    if unsupported:
        return Plan(
            refusal=f"--{unsupported[0]} is for systemd; on Windows the daemon starts at "
            "sign-in from the Run key, and a tool starts it when none runs"
        )
    current = registry.get(VALUE_NAME)
    if args.uninstall:
        return uninstall_plan(current)
    return install_plan(serve_command(executable), current, force=bool(args.force))


class WindowsRegistry:
    """HKEY_CURRENT_USER's Run key, through winreg."""

    def __init__(self) -> None:
        import winreg  # type: ignore[import-not-found,unused-ignore]  # Windows only

        self.winreg = winreg

    def get(self, name: str) -> str | None:
        reg = self.winreg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _kind = reg.QueryValueEx(key, name)
        except FileNotFoundError:
            return None
        return str(value)

    def set(self, name: str, value: str) -> None:
        reg = self.winreg
        with reg.CreateKeyEx(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
            reg.SetValueEx(key, name, 0, reg.REG_SZ, value)

    def delete(self, name: str) -> None:
        reg = self.winreg
        with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
            reg.DeleteValue(key, name)


def run(args: argparse.Namespace) -> int:
    """install-service on Windows: register (or remove) the daemon's start at sign-in."""
    registry = WindowsRegistry()
    plan = plan_for(args, registry, sys.executable)
    return execute(plan, registry, sys.stdout, sys.stderr, dry_run=bool(args.dry_run))
