"""Every error a ``bridge.client`` call can raise is importable from ``bridge.client``.

The walk follows bridge's own imports from every module of ``bridge.client`` (as
tests/test_layout.py does), and collects each error class those modules name: raised,
built to be raised later (``return ControlPlaneRefused(...)``), caught or defined.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from typing import Any

import pytest

import bridge.client
from bridge import errors
from bridge.errors import BridgeError
from bridge.paths import Paths
from tests.test_layout import client_modules, module_path, reachable_from


def names_in(module_name: str) -> dict[str, Any]:
    """Resolve every name the module's code can refer to: its globals and local imports."""
    module = importlib.import_module(module_name)
    names: dict[str, Any] = dict(vars(module))
    path = module_path(module_name)
    assert path is not None
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            source = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(source, alias.name):
                    names[alias.asname or alias.name] = getattr(source, alias.name)
    return names


def error_classes_named(module_name: str) -> dict[type[BridgeError], str]:
    """Each BridgeError class the module's code names, and one line where it does."""
    path = module_path(module_name)
    assert path is not None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = names_in(module_name)
    found: dict[type[BridgeError], str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            name, line = node.id, node.lineno
        elif isinstance(node, ast.ClassDef):
            name, line = node.name, node.lineno
        else:
            continue
        value = names.get(name)
        if inspect.isclass(value) and issubclass(value, BridgeError):
            found.setdefault(value, f"{module_name}:{line}")
    return found


def reachable_error_classes() -> dict[type[BridgeError], str]:
    modules = [name for name in reachable_from(client_modules()) if name.split(".")[0] == "bridge"]
    found: dict[type[BridgeError], str] = {}
    for name in sorted(modules):
        if module_path(name) is None:
            continue
        for cls, where in error_classes_named(name).items():
            found.setdefault(cls, where)
    return found


def test_the_walk_sees_the_errors_it_must() -> None:
    found = reachable_error_classes()

    # Raised in bridge.client.api, autostart and bridge.paths (a module the walk reaches).
    from bridge.client.api import LoginNotFound, PortTaken

    assert {LoginNotFound, PortTaken, errors.DaemonNotRunning, errors.UnsafeDir} <= set(found)


def test_every_error_a_client_call_can_raise_is_exported_from_bridge_client() -> None:
    missing = {
        cls.__name__: where
        for cls, where in reachable_error_classes().items()
        if cls.__name__ not in bridge.client.__all__
        or getattr(bridge.client, cls.__name__, None) is not cls
    }

    assert missing == {}, f"raised by bridge.client but not exported (class: where): {missing}"


@pytest.mark.parametrize("name", bridge.client.__all__)
def test_every_exported_name_imports(name: str) -> None:
    exec(f"from bridge.client import {name}", {})  # noqa: S102 - the import statement itself


def test_the_old_name_of_the_unsafe_dir_error_still_works() -> None:
    from bridge.client import UnsafeDir, UnsafeRuntimeDir

    assert UnsafeRuntimeDir is UnsafeDir
    assert issubclass(UnsafeDir, errors.UsageError)


# "    │   ├── ConfigError         the config file ..." -> (depth, "ConfigError")
TREE_LINE = re.compile(r"^    ((?:[│ ]   )*)(?:├── |└── )?([A-Z]\w+)\s")


def drawn_tree() -> list[tuple[str, str | None]]:
    """Each class the docstring of bridge.errors draws, with the parent it is drawn under."""
    assert errors.__doc__ is not None
    parents: list[str] = []
    drawn: list[tuple[str, str | None]] = []
    for line in errors.__doc__.splitlines():
        match = TREE_LINE.match(line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4 + (1 if "── " in line else 0)
        name = match.group(2)
        del parents[depth:]
        drawn.append((name, parents[-1] if parents else None))
        parents.append(name)
    return drawn


def test_the_exception_tree_drawn_in_bridge_errors_is_true() -> None:
    drawn = drawn_tree()
    classes = {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BridgeError)
    }

    assert drawn[0] == ("BridgeError", None)
    for name, parent in drawn[1:]:
        assert parent is not None
        assert classes[name].__bases__ == (classes[parent],), f"{name} is not drawn right"
    # Every class of the module is in the drawing (an alias under its own name's line).
    assert {classes[name] for name, _ in drawn} == set(classes.values())


def test_a_library_caller_is_told_of_start_false_not_of_a_cli_flag(paths: Paths) -> None:
    from bridge.client import Bridge, DaemonNotRunning

    with pytest.raises(DaemonNotRunning) as refused:
        Bridge(start=False, paths=paths)

    message = refused.value.message
    assert "start=False" in message
    assert "--" not in message
    assert refused.value.exit_code == 3
    # The CLI puts in its own flag, or none for a command that has no such flag.
    assert "leave out --no-start" in refused.value.for_command_line("--no-start")
    assert "start=False" not in refused.value.for_command_line(None)
    assert "--" not in refused.value.for_command_line(None)
