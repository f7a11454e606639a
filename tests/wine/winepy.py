"""Run the Windows CPython that tests/wine/setup.sh builds, from Linux (standard library only).

    tree = build()                        # setup.sh: cached, milliseconds once built
    wine = Wine(tree).clone(tmp / "prefix")   # a private prefix (0.05 s), or Wine(tree)
    wine.up()                             # wineserver + Wine's services, once per session
    view = wine.view(REPO, tmp / "py")    # python.exe whose ._pth also lists the checkout
    done = wine.run(view, ["-m", "bridge", "status"])   # stdout/stderr are pipes

What it knows of Wine:
- stdout and stderr must be pipes (or a file opened inside Windows): a Linux regular file
  or /dev/null there makes CPython die in init_sys_streams with [WinError 6];
- the first Wine process of a prefix starts its services (services.exe, explorer, ...),
  which inherit that process's stdio: `up()` starts them on /dev/null first, so that a
  later pipe reaches its end when python.exe exits, not when the services do;
- the ._pth file makes CPython isolated (-I): PYTHONPATH, PYTHONUTF8 and PYTHONIOENCODING
  are ignored and the working directory is not on sys.path. `view()` makes a directory
  of symlinks to the tree's interpreter with its own ._pth that lists the checkout, so
  `python.exe -P -m bridge ...` imports the checkout, in child processes too
  (sys.executable is the view's python.exe);
- Linux paths are Z:\\ paths inside Wine (Z: is / in a new prefix): `windows_path()`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

SETUP = Path(__file__).resolve().parent / "setup.sh"
BUILD_TIMEOUT = 900


class WineError(RuntimeError):
    """setup.sh failed, or the tree it printed is not usable."""


def build(*, timeout: float = BUILD_TIMEOUT) -> Path:
    """Build the tree once (cached by the recipe's hash) and return its path."""
    result = subprocess.run(
        ["bash", str(SETUP)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise WineError(f"setup.sh exited {result.returncode}:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def windows_path(path: Path | str) -> str:
    r"""A Linux path as Wine's Z: drive spells it: /tmp/x -> Z:\tmp\x."""
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def read_env(tree: Path) -> dict[str, str]:
    """The tree's env file (KEY=value lines, values optionally in double quotes)."""
    env: dict[str, str] = {}
    for line in (tree / "env").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value.strip('"')
    return env


class Wine:
    """One prefix and the interpreter in ``tree``."""

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        settings = read_env(tree)
        self.wine = settings["WINE"]
        self.wineserver = settings["WINESERVER"]
        self.python = Path(settings["WINE_PYTHON"])
        self.environ = {
            name: settings[name] for name in ("WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES")
        }

    def clone(self, into: Path) -> Wine:
        """The same interpreter on a private copy of the prefix, in a twentieth of a second.

        Hard links for the ~800 files Wine never writes (its DLLs), real copies of the
        registry hives and .ini files, which wineserver rewrites in place: a test's
        registry writes (HKCU Run, ...) then stay out of the cached prefix, and the copy
        has a wineserver of its own (the server is keyed by the prefix directory)."""
        source = Path(self.environ["WINEPREFIX"])
        subprocess.run(["cp", "-al", str(source), str(into)], check=True, timeout=60)
        mutable = [*into.glob("*.reg"), *(into / "drive_c" / "windows").glob("*.ini")]
        for copy in mutable:
            copy.unlink()
            shutil.copy2(source / copy.relative_to(into), copy)
        other = Wine(self.tree)
        other.environ["WINEPREFIX"] = str(into)
        return other

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """os.environ for a Wine process: no display, the tree's prefix, Wine quiet."""
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.update(self.environ)
        env.update(extra or {})
        return env

    def up(self, *, linger: int | None = None) -> None:
        """Start the prefix's wineserver (persistent, or ``linger`` s after its last client)
        and Wine's services, all on /dev/null. About half a second; then a python.exe that
        prints and exits takes under a tenth of one."""
        persist = "-p" if linger is None else f"-p{linger}"
        null = subprocess.DEVNULL
        # Exits 2 when this prefix's server is already running: that is fine too.
        subprocess.run(
            [self.wineserver, persist], stdin=null, stdout=null, stderr=null, env=self.env(),
            check=False, timeout=30,
        )  # fmt: skip
        subprocess.run(
            [self.wine, "wineboot"], stdin=null, stdout=null, stderr=null, env=self.env(),
            check=True, timeout=120,
        )  # fmt: skip

    def down(self) -> None:
        """Kill every process of the prefix and its wineserver (which saves the registry)."""
        subprocess.run([self.wineserver, "-k"], env=self.env(), check=False, timeout=30)
        subprocess.run([self.wineserver, "-w"], env=self.env(), check=False, timeout=30)

    def view(self, checkout: Path, into: Path) -> Path:
        """A python.exe that sees the tree's stdlib and site-packages, then ``checkout``.

        Symlinks to the tree's interpreter files, and a ._pth of absolute paths: Wine does
        not resolve the symlinks, so CPython finds this ._pth beside "its" DLL."""
        into.mkdir(parents=True, exist_ok=True)
        home = self.python.parent
        pth = next(home.glob("python3*._pth"))
        for item in home.iterdir():
            if item.name != pth.name and item.name != "Lib":
                (into / item.name).symlink_to(item)
        lines = [
            windows_path(home / pth.with_suffix(".zip").name),
            windows_path(home),
            windows_path(home / "Lib" / "site-packages"),
            windows_path(checkout),
            "import site",
        ]
        (into / pth.name).write_text("\r\n".join(lines) + "\r\n", encoding="ascii")
        return into / "python.exe"

    def command(self, python: Path, argv: Sequence[str]) -> list[str]:
        """wine64 python.exe -X utf8 ARGV: UTF-8 stdio whatever the Windows code page."""
        return [self.wine, str(python), "-X", "utf8", *argv]

    def run(
        self,
        python: Path,
        argv: Sequence[str],
        *,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run python.exe to its end; stdin /dev/null, stdout and stderr captured (pipes).
        CRLF (Windows text mode) comes back as LF."""
        return subprocess.run(
            self.command(python, argv), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, encoding="utf-8", errors="replace", timeout=timeout,
            env=self.env(env), cwd=cwd, check=False,
        )  # fmt: skip

    def start(
        self,
        python: Path,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[str]:
        """Start python.exe with pipes (see run()), for a server the test talks to."""
        return subprocess.Popen(
            self.command(python, argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
            env=self.env(env), cwd=cwd,
        )  # fmt: skip
