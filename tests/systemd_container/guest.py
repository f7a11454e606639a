"""Boot a real systemd (PID 1) and a lingering user's manager in systemd-nspawn.

The root is built once per machine by build-root.sh (cached outside the repo, by the
hash of that script), and every boot runs on a tmpfs overlay of it, so each is pristine.
This module is the standard library only; every wait in it is bounded by a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_ROOT = HERE / "build-root.sh"
CACHE = Path(
    os.environ.get("OAUTH_BRIDGE_ROOT_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "oauth-bridge-systemd-root"
)
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The guest's interpreter (Debian 12's): pip fetches wheels for it, whatever the host runs.
GUEST_PYTHON = "3.11"
GUEST_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "nsenter": "util-linux",
    "setpriv": "util-linux",
}

T = TypeVar("T")


class ContainerError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    """Name the tools (with their Debian package) this tier needs and cannot find."""
    return [f"{tool} ({package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]


def cached_root() -> Path:
    """Where build-root.sh puts (or has put) the root of its current recipe."""
    return CACHE / hashlib.sha256(BUILD_ROOT.read_bytes()).hexdigest()[:16]


def root_is_built() -> bool:
    return (cached_root() / "usr/lib/systemd/systemd").exists()


def build_root() -> Path:
    """Build the root once (cached by the recipe's hash) and return its path."""
    result = subprocess.run(
        ["bash", str(BUILD_ROOT)], capture_output=True,
        text=True, timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ContainerError(f"build-root.sh exited {result.returncode}:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def snapshot(into: Path) -> Path:
    """Copy the working tree as it is on disk: tracked and untracked files, not ignored ones.

    `git archive HEAD` would miss uncommitted work, and `pip wheel` in the checkout itself
    would write build/ and *.egg-info into it.
    """
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True, timeout=60,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree, not yet in the index
            continue
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for directory in [into, *(p for p in into.rglob("*") if p.is_dir())]:
        directory.chmod(0o755)  # bound into the guest, read by its test user
    return into


def project_wheel(source: Path, out: Path) -> Path:
    """Build this checkout's wheel from a snapshot of it."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ContainerError(f"pip wheel failed:\n{result.stdout}{result.stderr}")
    out.chmod(0o755)
    return max(out.glob("oauth_bridge-*.whl"))


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    return sorted(
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    )


def wheelhouse(project: Path) -> Path:
    """A dir of the project's runtime dependency wheels for the guest's Python.

    Cached by the dependency list, not the project's code: a second run downloads
    nothing. The guest then installs with --no-index: no network, no CA bundle there.
    """
    deps = _requires_dist(project)
    key = hashlib.sha256("\n".join([GUEST_PYTHON, *GUEST_PLATFORMS, *deps]).encode())
    target = CACHE / "wheels" / key.hexdigest()[:16]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        platforms = [arg for p in GUEST_PLATFORMS for arg in ("--platform", p)]
        abi = "cp" + GUEST_PYTHON.replace(".", "")
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
             "--python-version", GUEST_PYTHON, "--implementation", "cp", "--abi", abi,
             *platforms, "-d", str(tmp), *deps],
            check=False, timeout=600, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise ContainerError(f"pip download failed:\n{result.stdout}{result.stderr}")
        tmp.chmod(0o755)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def poll(what: str, probe: Callable[[], T | None], *, within: float = 30.0) -> T:
    """Call ``probe`` until it returns something truthy, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    delay = 0.02
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


class Container:
    """One booted container; a context manager that always shuts it down."""

    def __init__(
        self,
        root: Path,
        *,
        name: str = "oauth-bridge-ci",
        user: str = "tester",
        uid: int = 1000,
        binds_ro: Sequence[tuple[Path, str]] = (),
        log: Path | None = None,
    ) -> None:
        self.root = root
        self.name = name
        self.user = user
        self.uid = uid
        self.binds_ro = list(binds_ro)
        self.log = log or Path(tempfile.gettempdir()) / f"{name}.console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None

    # --- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        command = [
            # SIGTERM (an orderly poweroff) to nspawn if this process dies, so a killed
            # pytest leaves no container behind; setpriv execs, so proc.pid is nspawn's.
            "setpriv", "--pdeathsig=TERM", "--",
            "systemd-nspawn", "--quiet",
            f"--directory={self.root}", f"--machine={self.name}",
            "--register=no",        # no systemd-machined on the host
            "--keep-unit",          # no host systemd to make a scope unit
            "--volatile=overlay",   # tmpfs over the cached root: every boot is pristine
            "--console=read-only",  # boot messages to our log, no tty needed
            "--private-network",    # its own loopback: the host's 8765 stays the host's
            *(f"--bind-ro={src}:{dst}" for src, dst in self.binds_ro),
            "--boot",
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                # A pure cgroup2 guest, as on today's desktops, even on a hybrid host.
                env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
            )  # fmt: skip
        try:
            self.leader = self._wait_for_leader(deadline)

            def left() -> float:
                return max(1.0, deadline - time.monotonic())

            # PID 1 has exec'd, but its bus socket comes a few ms later.
            poll(
                "the system manager's bus",
                lambda: self.run("test", "-S", "/run/systemd/private", check=False).returncode == 0,
                within=left(),
            )
            # nspawn mounts a FIFO over /proc/kmsg; ProtectKernelLogs= (in the --sandbox
            # drop-in) then fails with 226/NAMESPACE. Lifting that mount, in the
            # container's mount namespace only, shows the real, root-only file.
            self.run("umount", "/proc/kmsg")
            state = self.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=left()
            ).stdout.strip()
            if state not in ("running", "degraded"):
                failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
                raise ContainerError(f"system state {state!r}\n{failed}")
            poll(
                "the user manager",
                lambda: self.run("systemctl", "--user", "is-system-running", user=self.user,
                                 check=False).stdout.strip() in ("running", "degraded"),
                within=left(),
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def _wait_for_leader(self, deadline: float) -> int:
        assert self.proc is not None
        nspawn = self.proc.pid

        def leader() -> int | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise ContainerError(
                    f"systemd-nspawn exited {self.proc.returncode}:\n{self.log.read_text()}"
                )
            for task in Path(f"/proc/{nspawn}/task").glob("*/children"):
                for pid in task.read_text().split():
                    try:  # the container's PID 1 once it exec'd systemd
                        if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                            return int(pid)
                    except OSError:
                        pass
            return None

        return poll("the container's PID 1", leader, within=deadline - time.monotonic())

    def stop(self, timeout: float = 30) -> None:
        """Orderly poweroff; SIGKILL of the whole PID namespace as a fallback."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # nspawn turns SIGTERM into SIGRTMIN+3 for PID 1 (its --kill-signal with
            # --boot): systemd stops every unit, then nspawn unmounts and exits.
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if self.leader:
                    os.kill(self.leader, signal.SIGKILL)  # ends the whole pid namespace
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        self.leader = None

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- commands ------------------------------------------------------------

    def argv(self, *command: str, user: str | None = None, env: dict[str, str] | None = None) -> list[str]:  # fmt: skip
        """The host command line that runs ``command`` in the container (as ``user``)."""
        if self.leader is None:
            raise ContainerError("the container is not running")
        # env -i: the host's environment (REQUESTS_CA_BUNDLE, PIP_*, VIRTUAL_ENV, ...)
        # must not leak into the guest through nsenter.
        prefix = ["nsenter", f"--target={self.leader}", "--all", "--",
                  "env", "-i", f"PATH={GUEST_PATH}", "LANG=C.UTF-8"]  # fmt: skip
        if user is not None:
            prefix += ["runuser", "-u", user, "--", "env", f"HOME=/home/{user}", f"USER={user}",
                       f"LOGNAME={user}"]  # fmt: skip
            if user == self.user:
                prefix += [
                    f"XDG_RUNTIME_DIR=/run/user/{self.uid}",
                    f"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{self.uid}/bus",
                ]
        prefix += [f"{k}={v}" for k, v in (env or {}).items()]
        return [*prefix, *command]

    def run(
        self,
        *command: str,
        user: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*command, user=user, env=env), input=input, text=True,
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise ContainerError(
                f"{' '.join(command)} exited {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result

    def spawn(
        self, *command: str, user: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start ``command`` in the guest and return at once (its output piped)."""
        return subprocess.Popen(
            self.argv(*command, user=user, env=env), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


# --- the test user's side ------------------------------------------------------

VENV = "/home/tester/venv"
OAUTH_BRIDGE = f"{VENV}/bin/oauth-bridge"
UNIT_DIR = "/home/tester/.config/systemd/user"
CONFIG_DIR = "/home/tester/.config/oauth-bridge"
STATE_DIR = "/home/tester/.local/state/oauth-bridge"
DOUBLE_PORT = 8900
DOUBLE_URL = f"http://127.0.0.1:{DOUBLE_PORT}"
PROBE = "/src/tests/systemd_container/probe.py"
# The API key and workspace the double expects (tests/control_plane_double.py).
CONFIG = f"""\
control_plane_url = "{DOUBLE_URL}"
workspace_id = "ws-42"
api_key_file = "{CONFIG_DIR}/api-key"
"""


class Guest:
    """The booted container, seen as its test user sees it."""

    def __init__(self, box: Container) -> None:
        self.box = box

    def sh(self, script: str, *, check: bool = True, input: str | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.box.run("sh", "-c", script, user=self.box.user, check=check, input=input,
                            timeout=timeout)  # fmt: skip

    def root(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.box.run(*command, check=check)

    def oauth_bridge(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                     input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return self.box.run(OAUTH_BRIDGE, *args, user=self.box.user, check=check, env=env,
                            input=input, timeout=timeout)  # fmt: skip

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """`oauth-bridge ARGS` in the background, its output piped."""
        return self.box.spawn(OAUTH_BRIDGE, *args, user=self.box.user, env=env)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.box.run("systemctl", "--user", *args, user=self.box.user, check=check)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def write(self, path: str, text: str) -> None:
        self.sh(f'mkdir -p "$(dirname "{path}")" && cat > "{path}"', input=text)

    def get(self, url: str) -> tuple[int, str]:
        """GET ``url`` from inside the guest as a browser would; (status, body)."""
        out = self.box.run("python3", PROBE, url, user=self.box.user).stdout
        answer = json.loads(out)
        return int(answer["status"]), str(answer["body"])

    def auth_requests(self) -> list[dict[str, str]]:
        status, body = self.get(f"{DOUBLE_URL}/test/auth-requests")
        assert status == 200, body
        requests: list[dict[str, str]] = json.loads(body)
        return requests

    def journal(self, unit: str = "oauth-bridge.service") -> str:
        """The user unit's log lines and its manager's lines about it (read as root)."""
        return self.root(
            "journalctl", "--no-pager", "-o", "cat",
            f"_SYSTEMD_USER_UNIT={unit}", "+", f"USER_UNIT={unit}",
        ).stdout  # fmt: skip

    def main_pid(self) -> int:
        return int(self.show("oauth-bridge.service", "MainPID")["MainPID"])

    def listening(self) -> str:
        return self.root("ss", "-Hltnx").stdout
