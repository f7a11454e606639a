"""Probe, under the Windows Python, what starting and stopping a daemon on Windows needs.

Run: `wine64 python.exe probe_process.py`. Prints JSON lines {"check": ..., "ok": ...,
"detail": ...}; exits 1 if a required check failed. Checks:
- the interpreter: version, sys.executable, stdio encodings, flags (a ._pth file makes it
  isolated: PYTHONPATH and the other PYTHON* variables are ignored), platformdirs' paths;
- a child started the way an autostart would start the daemon: `sys.executable` with
  DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP, stdin DEVNULL, stdout and stderr a log
  file opened inside Windows; it writes non-ASCII text, and the log holds it;
- stopping it: `os.kill(pid, signal.CTRL_BREAK_EVENT)` to a child in its own console
  process group (informational: a detached child has no console), then TerminateProcess
  (`Popen.kill`), and the exit codes seen.
"""

from __future__ import annotations

import json
import locale
import os
import signal
import subprocess
import sys
import tempfile
import time

import platformdirs

assert sys.platform == "win32"  # mypy checks none of what follows on Linux; ruff does

failures: list[str] = []

CHILD = """
import signal, sys, time
print("child up \\u00e9\\u2713", flush=True)
print("to stderr", file=sys.stderr, flush=True)
if sys.argv[1:] == ["wait"]:
    signal.signal(signal.SIGBREAK, lambda *_: (print("got SIGBREAK", flush=True), sys.exit(3)))
    time.sleep(60)
"""


def report(check: str, ok: bool, detail: object = None, *, required: bool = True) -> None:
    if not ok and required:
        failures.append(check)
    line: dict[str, object] = {"check": check, "ok": ok, "detail": detail}
    if not required:
        line["required"] = False
    print(json.dumps(line), flush=True)


def interpreter() -> None:
    report(
        "interpreter",
        sys.version_info >= (3, 11),
        {
            "version": sys.version,
            "executable": sys.executable,
            "prefix": sys.prefix,
            "path": sys.path,
            "isolated": sys.flags.isolated,
            "ignore_environment": sys.flags.ignore_environment,
            "utf8_mode": sys.flags.utf8_mode,
            "stdout": sys.stdout.encoding,
            "stderr": sys.stderr.encoding,
            "preferred": locale.getpreferredencoding(False),
            "filesystem": sys.getfilesystemencoding(),
            "cwd": os.getcwd(),
            "PYTHONPATH in environ": os.environ.get("PYTHONPATH"),
        },
    )
    report(
        "platformdirs",
        True,
        {
            "user_config_dir": platformdirs.user_config_dir("oauth-bridge", appauthor=False),
            "user_state_dir": platformdirs.user_state_dir("oauth-bridge", appauthor=False),
            "user_runtime_dir": platformdirs.user_runtime_dir("oauth-bridge", appauthor=False),
            "user_log_dir": platformdirs.user_log_dir("oauth-bridge", appauthor=False),
            "TEMP": tempfile.gettempdir(),
        },
    )


def detached_child(log_dir: str) -> None:
    log_path = os.path.join(log_dir, "daemon.log")
    flags = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [sys.executable, "-X", "utf8", "-c", CHILD],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=log_dir,
            creationflags=flags,
            close_fds=True,
        )
    code = child.wait(60)
    with open(log_path, encoding="utf-8") as log:
        text = log.read()
    report(
        "detached child, stdout/stderr to a log file opened in Windows",
        code == 0 and "child up \u00e9\u2713" in text and "to stderr" in text,
        {"exit": code, "log": text},
    )


def stop_child() -> None:
    child = subprocess.Popen(
        [sys.executable, "-X", "utf8", "-c", CHILD, "wait"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        creationflags=subprocess.CREATE_NEW_PROCESS_GROUP,
    )
    assert child.stdout is not None
    first = child.stdout.readline().decode("utf-8", "replace").strip()
    time.sleep(0.5)  # let it install the SIGBREAK handler
    try:
        os.kill(child.pid, signal.CTRL_BREAK_EVENT)
        code: int | None = child.wait(10)
        detail: object = {"exit": code, "said": first, "then": child.stdout.read().decode()}
        report("CTRL_BREAK_EVENT to a child's process group", code == 3, detail, required=False)
    except Exception as exc:  # 3.11 raises SystemError when GenerateConsoleCtrlEvent fails
        detail = {"error": repr(exc), "child still running": child.poll() is None}
        report("CTRL_BREAK_EVENT to a child's process group", False, detail, required=False)
    if child.poll() is None:
        child.kill()
        code = child.wait(10)
        report("TerminateProcess (Popen.kill) after that", True, {"exit": code})
    child.stdout.close()
    assert child.stderr is not None
    child.stderr.close()

    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL
    )
    other.kill()
    report("TerminateProcess (Popen.kill)", other.wait(10) == 1, {"exit": other.returncode})


def main() -> int:
    interpreter()
    with tempfile.TemporaryDirectory() as log_dir:
        try:
            detached_child(log_dir)
        except Exception as exc:
            report("detached child", False, f"{type(exc).__name__}: {exc}")
    try:
        stop_child()
    except Exception as exc:
        report("stopping a child", False, f"{type(exc).__name__}: {exc}")
    failed = list(failures)
    report("summary", not failed, {"failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
