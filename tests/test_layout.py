"""The layout holds its lines: a tool's process stays on the standard library, the wheel is whole."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bridge.paths import Paths
from tests.conftest import REPO, daemon_environ

PACKAGE = REPO / "bridge"
SERVER_STACK = ("aiohttp", "pydantic", "pydantic_core", "yarl", "multidict")
# A tool's process may use bridge's shared modules, bridge.client and bridge.platform (the
# system's seams, standard library only), nothing else of ours.
SHARED = ("bridge", "bridge.errors", "bridge.paths", "bridge.fingerprint", "bridge.netowner")


def shared(module: str) -> bool:
    """Say whether a tool's process may import ``module`` of ours (by name, not prefix)."""
    return (
        module in SHARED
        or module.startswith(("bridge.client.", "bridge.platform."))
        or (module in ("bridge.client", "bridge.platform"))
    )


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, by its full name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path if path.name == "__init__.py" else path.parent)
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            # `from bridge.client import commands` imports a module, not a name.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] != "bridge" or module_path(name)}


def reachable_from(roots: list[str]) -> dict[str, str]:
    """Follow bridge's own imports from ``roots``; map each module reached to who imports it."""
    seen: dict[str, str] = {root: "(start)" for root in roots}
    queue = list(roots)
    while queue:
        name = queue.pop()
        path = module_path(name)
        if path is None:
            continue
        for imported in imports_of(path):
            # Importing bridge.x.y runs bridge.x's __init__ too.
            parents = [".".join(imported.split(".")[:i]) for i in range(1, imported.count(".") + 2)]
            for module in parents:
                if module not in seen:
                    seen[module] = name
                    if module.split(".")[0] == "bridge":
                        queue.append(module)
    return seen


def client_modules() -> list[str]:
    return sorted(module_name(path) for path in (PACKAGE / "client").rglob("*.py"))


def test_nothing_a_tool_runs_imports_the_server_stack_or_the_daemon() -> None:
    reached = reachable_from(["bridge.cli", *client_modules()])
    # bridge.cli imports the daemon only inside serve(), which runs in the daemon's
    # own process: every other path out of a tool's process is a mistake.
    reached_by_tools = reachable_from(client_modules())

    offenders = {
        module: importer
        for module, importer in reached_by_tools.items()
        if module.split(".")[0] in SERVER_STACK
        or (module.startswith("bridge.") and not shared(module))
    }

    assert offenders == {}, f"a tool's process would import these (module: importer): {offenders}"
    assert "bridge.daemon.lifecycle" in reached  # the walk does see serve()'s import


def test_the_boundary_check_sees_an_import_hidden_in_a_function(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    import aiohttp.web\n    from bridge.daemon import store\n")

    imported = imports_of(planted)

    assert {"aiohttp.web", "bridge.daemon.store"} <= imported


def test_nothing_in_the_daemon_but_its_entry_imports_the_lifecycle() -> None:
    importers = [
        module_name(path)
        for path in (PACKAGE / "daemon").rglob("*.py")
        if "bridge.daemon.lifecycle" in imports_of(path)
    ]

    assert importers == []


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["cancel", "some-login"],
        ["complete", "http://127.0.0.1:8765/callback/github?code=c&state=s"],
        ["expect", "--provider", "github", "--state", "s", "--no-start", "--wait"],
        ["login", "--provider", "github", "--scope", "repo", "--no-start"],
        ["stop"],
        ["providers", "allow-loopback", "github"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_tool_command_loads_no_server_stack(paths: Paths, argv: list[str]) -> None:
    code = (
        "import sys\nfrom bridge.cli import main\n"
        f"code = main({argv!r})\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])), code)"
    )
    env = daemon_environ(paths, "http://127.0.0.1:9")

    result = subprocess.run(
        [sys.executable, "-c", code, *SERVER_STACK],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )

    assert result.stdout.split("\n")[-2] == "[] 3"  # nothing loaded; no daemon ran (exit 3)


def test_the_wheel_lists_every_package() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    on_disk = {module_name(init) for init in PACKAGE.rglob("__init__.py")}

    assert on_disk <= listed
