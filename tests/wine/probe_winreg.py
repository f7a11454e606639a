"""Probe, under the Windows Python, the per-user autostart key: HKCU\\...\\CurrentVersion\\Run.

Run: `wine64 python.exe probe_winreg.py`. Writes a value named oauth-bridge-probe-<pid>,
reads it back (and in a listing of the key), deletes it, checks it is gone. Prints JSON
lines {"check": ..., "ok": ..., "detail": ...}; exits 1 if a check failed.
"""

from __future__ import annotations

import json
import os
import sys
import winreg

assert sys.platform == "win32"  # mypy checks none of what follows on Linux; ruff does

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
failures: list[str] = []


def report(check: str, ok: bool, detail: object = None) -> None:
    if not ok:
        failures.append(check)
    print(json.dumps({"check": check, "ok": ok, "detail": detail}), flush=True)


def values(key: winreg.HKEYType) -> dict[str, object]:
    found: dict[str, object] = {}
    index = 0
    while True:
        try:
            name, data, _ = winreg.EnumValue(key, index)
        except OSError:  # ERROR_NO_MORE_ITEMS
            return found
        found[name] = data
        index += 1


def main() -> int:
    name = f"oauth-bridge-probe-{os.getpid()}"
    command = f'"{sys.executable.replace("python.exe", "pythonw.exe")}" -P -m bridge serve'
    try:
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_ALL_ACCESS) as key:
            winreg.SetValueEx(key, name, 0, winreg.REG_SZ, command)
            report("SetValueEx(HKCU\\...\\Run)", True, {name: command})

            data, kind = winreg.QueryValueEx(key, name)
            report("QueryValueEx reads it back", data == command and kind == winreg.REG_SZ, data)
            report("EnumValue lists it", values(key).get(name) == command, sorted(values(key)))

            winreg.DeleteValue(key, name)
            try:
                winreg.QueryValueEx(key, name)
            except FileNotFoundError as exc:
                report("DeleteValue removes it", True, f"then QueryValueEx: {exc}")
            else:
                report("DeleteValue removes it", False, "still there")
        # A fresh handle sees the same (the registry lives in wineserver, not in the handle).
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            report("a new handle no longer sees it", name not in values(key), sorted(values(key)))
    except OSError as exc:
        report("winreg", False, f"{type(exc).__name__}: {exc}")
    failed = list(failures)
    report("summary", not failed, {"failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
