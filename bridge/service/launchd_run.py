"""``oauth-bridge install-service`` on macOS: the LaunchAgent's plan, carried out.

``bridge.service.launchd`` says what to write and run; this prints it (``--dry-run``,
and the commands without ``--enable``) or does it, as the systemd installer does for
its units: a plist this command did not write, or one edited since, is neither replaced
nor removed without ``--force``; an agent already loaded is restarted onto a changed
plist only when no login is under way.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bridge.errors import BridgeError, ExitCode
from bridge.service import launchd
from bridge.service.files import write_atomically
from bridge.service.install import (
    DEFAULT_PORT,
    DirProblem,
    PortProblem,
    config_override,
    configured_port,
    logins_under_way,
    print_credentials_hint,
    state_dir,
)

__all__ = ["is_ours_and_unedited", "mark", "run"]

# After the XML declaration: a comment is allowed there, and launchd and plistlib skip it.
_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_MARKER = b"<!-- Written by `oauth-bridge install-service` (sha256 "
# No "--" inside: XML ends a comment there (launchd would refuse the whole plist).
_MARKER_END = b"). It keeps this file once edited, unless forced. -->\n"


def mark(content: bytes) -> bytes:
    """Return the plist with the comment that lets a later run tell it was not edited."""
    body = content.removeprefix(_DECLARATION)
    digest = hashlib.sha256(body).hexdigest().encode()
    return _DECLARATION + _MARKER + digest + _MARKER_END + body


def is_ours_and_unedited(content: bytes) -> bool:
    """Say whether ``content`` is a plist ``mark`` wrote, byte for byte as it wrote it."""
    rest = content.removeprefix(_DECLARATION + _MARKER)
    digest, found, body = rest.partition(_MARKER_END)
    return rest != content and found != b"" and digest == hashlib.sha256(body).hexdigest().encode()


@dataclass(frozen=True)
class Host:
    """Who installs, and where: the user's uid and home, the interpreter, the environment."""

    uid: int
    home: Path
    interpreter: str
    environ: Mapping[str, str]

    @classmethod
    def current(cls) -> Host:
        return cls(os.getuid(), Path.home(), sys.executable, os.environ)

    @property
    def log_file(self) -> Path:
        # platformdirs' user_log_dir on macOS, where Console.app looks: the daemon's
        # stderr (its log, when launchd started it).
        return self.home / "Library" / "Logs" / launchd.LABEL / "launchd.log"


def _format(command: Sequence[str]) -> str:
    return shlex.join(command)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _launchctl(command: Sequence[str], out: TextIO, err: TextIO, *, check: bool = True) -> bool:
    """Run one launchctl command, saying it; False when it failed and ``check`` says that counts."""
    print(f"$ {_format(command)}", file=out, flush=True)
    result = subprocess.run(list(command), check=False, stderr=subprocess.PIPE, text=True)
    if result.stderr:
        err.write(result.stderr)
    if result.returncode != 0 and check:
        print(f"failed (exit {result.returncode}): {_format(command)}", file=err)
        return False
    return True


def _loaded(target: str) -> bool:
    # `launchctl print` answers 0 for a service launchd has loaded, 113 for none.
    result = subprocess.run(["launchctl", "print", target], check=False, capture_output=True)
    return result.returncode == 0


# launchd refuses to bootstrap a label it is still tearing down after a bootout, for a
# few seconds: "Bootstrap failed: 5: Input/output error" (or 37, "Operation already in
# progress"). Retried within this deadline, so that a restart does not leave the agent
# unloaded, with nobody holding the port.
_BOOTSTRAP_BUSY = frozenset({5, 37})
_BOOTSTRAP_DEADLINE_SECONDS = 15.0
_BOOTSTRAP_RETRY_SECONDS = 0.25


def _bootstrap(argv: Sequence[str], out: TextIO, err: TextIO) -> bool:
    import time

    deadline = time.monotonic() + _BOOTSTRAP_DEADLINE_SECONDS
    print(f"$ {_format(argv)}", file=out, flush=True)
    while True:
        result = subprocess.run(list(argv), check=False, stderr=subprocess.PIPE, text=True)
        if result.returncode == 0:
            return True
        if result.returncode not in _BOOTSTRAP_BUSY or time.monotonic() >= deadline:
            err.write(result.stderr or "")
            print(f"failed (exit {result.returncode}): {_format(argv)}", file=err)
            return False
        time.sleep(_BOOTSTRAP_RETRY_SECONDS)


def _gone(target: str) -> bool:
    """Wait, within the bootstrap's deadline, until launchd no longer has ``target``."""
    import time

    deadline = time.monotonic() + _BOOTSTRAP_DEADLINE_SECONDS
    while _loaded(target):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_BOOTSTRAP_RETRY_SECONDS)
    return True


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def run(args: argparse.Namespace, host: Host | None = None) -> int:
    """Install (or remove) the LaunchAgent and return the exit code."""
    host = host or Host.current()
    out, err = sys.stdout, sys.stderr
    if getattr(args, "sandbox", False):
        print(
            "Refusing --sandbox: it is systemd's namespace drop-in; a LaunchAgent runs as "
            "you, with the socket and the files private to you.",
            file=err,
        )
        return ExitCode.USAGE
    if args.uninstall:
        return _uninstall(args, host, out, err)
    try:
        plan, state = _install_plan(args, host)
    except (PortProblem, DirProblem, ValueError, BridgeError) as exc:
        print(f"Refusing: {exc}.", file=err)
        return ExitCode.USAGE

    (planned,) = plan.files
    content = mark(planned.content)
    current = _read(planned.path)
    if args.dry_run:
        print(f"# {planned.path}", file=out)
        out.write(content.decode())
        return ExitCode.OK
    unchanged = current == content
    edited = current is not None and not unchanged and not is_ours_and_unedited(current)
    if edited and not args.force:
        print(f"Refusing to overwrite {planned.path}: it differs from what", file=err)
        print("this command would write (edited, or not written by it).", file=err)
        print("Compare with --dry-run, then pass --force to replace it.", file=err)
        return ExitCode.USAGE

    from bridge.paths import ensure_private_dir

    for directory in plan.directories:
        ensure_private_dir(directory)  # launchd makes neither the socket's dir nor the log's
    if unchanged:
        print(f"unchanged: {planned.path}", file=out)
    else:
        write_atomically(planned.path, content, planned.mode)
        print(f"wrote:     {planned.path}", file=out)

    target = f"gui/{host.uid}/{launchd.LABEL}"
    if args.enable:
        status = _enable(plan, target, host, content, state / LOADED_RECORD, out=out, err=err)
    else:
        print("Now run:", file=out)
        for command in plan.commands:
            print(f"  {_format(command.argv)}", file=out)
        for note in plan.notes[:1]:  # the bootout before a bootstrap; the key: below
            print(note, file=out)
        status = ExitCode.OK
    if not args.socket:
        print(
            "Without --socket the port is free whenever the daemon is not running, and "
            "macOS does not show whose socket takes it: with --socket, launchd holds it "
            "for you from login.",
            file=out,
        )
    print_credentials_hint(out, host.environ)
    return status


# In the state dir: the digest of the plist launchd last loaded from this command, so
# that a plist written while a restart had to wait still restarts the agent later.
LOADED_RECORD = "launchd-loaded.sha256"


def _install_plan(args: argparse.Namespace, host: Host) -> tuple[launchd.LaunchAgentPlan, Path]:
    from bridge.paths import default_paths

    port = configured_port(host.environ)
    if args.socket and port.number == 0:
        raise ValueError(
            f'the port is 0 ({port.origin}), "any free port", but launchd listens on one '
            f"fixed port, the one providers redirect to: configure one (`port = "
            f"{DEFAULT_PORT}` in the config file), or install without --socket"
        )
    # The dirs the tools resolve here, pinned: the agent's environment is not this
    # shell's, and a plist names paths literally.
    tools = default_paths(dict(host.environ))
    state = _agent_state_dir(host)
    plan = launchd.install_plan(
        uid=host.uid,
        home=host.home,
        interpreter=host.interpreter,
        port=port.number,
        runtime_dir=tools.runtime_dir,
        log_file=host.log_file,
        state_dir=state,
        config_file=config_override(host.environ),
        sockets=bool(args.socket),
    )
    return plan, state


def _enable(
    plan: launchd.LaunchAgentPlan,
    target: str,
    host: Host,
    content: bytes,
    record: Path,
    *,
    out: TextIO,
    err: TextIO,
) -> ExitCode:
    if shutil.which("launchctl", path=host.environ.get("PATH")) is None:
        print("launchctl is not on PATH; run these yourself:", file=err)
        for command in plan.commands:
            print(f"  {_format(command.argv)}", file=err)
        return ExitCode.PROBLEMS
    (bootstrap,) = plan.commands
    if _loaded(target):
        if _read(record) == _digest(content).encode():
            print(f"{target} is loaded with this plist already: nothing to restart", file=out)
            return ExitCode.OK
        # A loaded agent keeps the plist it was loaded with; a bootout ends its daemon,
        # so not while a login is under way.
        from bridge.paths import default_paths
        from bridge.platform import control_address

        runtime = default_paths(dict(host.environ)).runtime_dir
        under_way = logins_under_way(control_address(runtime))
        if under_way != 0:
            why = (
                f"{under_way} login(s) under way"
                if under_way is not None
                else "its control socket did not say whether a login is under way"
            )
            print(
                f"{target} is loaded with its old plist ({why}), and was left running. "
                "Once no login is under way, run this command again, or:\n"
                f"  launchctl bootout {target}\n"
                f"  {_format(bootstrap.argv)}",
                file=err,
            )
            return ExitCode.OK
        if not _launchctl(("launchctl", "bootout", target), out, err):
            return ExitCode.PROBLEMS
        if not _gone(target):
            print(f"launchd still has {target} after its bootout; run again later:", file=err)
            print(f"  {_format(bootstrap.argv)}", file=err)
            return ExitCode.PROBLEMS
    if not _bootstrap(bootstrap.argv, out, err):
        return ExitCode.PROBLEMS
    write_atomically(record, _digest(content).encode(), 0o600)
    return ExitCode.OK


def _uninstall(args: argparse.Namespace, host: Host, out: TextIO, err: TextIO) -> int:
    plan = launchd.uninstall_plan(uid=host.uid, home=host.home)
    present = [(path, content) for path in plan.removals if (content := _read(path)) is not None]
    blocked = [path for path, content in present if not is_ours_and_unedited(content)]
    if blocked and not args.force:
        for path in blocked:
            print(f"Refusing to remove {path}: it was edited, or not written by", file=err)
            print("`oauth-bridge install-service`. Pass --force to remove it anyway.", file=err)
        return ExitCode.USAGE
    if args.dry_run:
        for path, _ in present:
            print(f"would remove: {path}", file=out)
        return ExitCode.OK
    status = ExitCode.OK
    if args.enable:
        # Before the file goes: launchd boots out by label, and says so if none is loaded.
        for command in plan.commands:
            if not _launchctl(command.argv, out, err, check=command.check):
                status = ExitCode.PROBLEMS
    for path, _ in present:
        path.unlink(missing_ok=True)
        print(f"removed: {path}", file=out)
    if args.enable and status == ExitCode.OK:
        _forget_loaded(host)
    if not present:
        print(f"nothing to remove: {plan.removals[0]} is not there", file=out)
    if not args.enable:
        print("Now run:", file=out)
        for command in plan.commands:
            print(f"  {_format(command.argv)}", file=out)
    return status


def _forget_loaded(host: Host) -> None:
    """Remove the record of what launchd loaded: it loads nothing of ours now."""
    try:
        (_agent_state_dir(host) / LOADED_RECORD).unlink(missing_ok=True)
    except DirProblem:
        return


def _agent_state_dir(host: Host) -> Path:
    """The state dir the tools use here (``OAUTH_BRIDGE_STATE_DIR``, else platformdirs')."""
    from bridge.paths import default_paths

    named = state_dir(host.environ)  # refuses a relative OAUTH_BRIDGE_STATE_DIR
    if named.origin != "the default":  # systemd's default is not the Mac's
        return named.path
    return default_paths(dict(host.environ)).state_dir
