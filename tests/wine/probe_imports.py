"""Probe, under the Windows Python, which of the checkout's modules import on Windows.

Run with an interpreter whose ._pth lists the checkout (run_probes.py makes one):
`wine64 <view>/python.exe probe_imports.py`. Prints one JSON line per module of the
`bridge` package, {"module": ..., "ok": ..., "detail": ...}, then a summary line. It is a
map for porting, not a pass/fail check: it always exits 0 once `bridge` itself imports.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import traceback

assert sys.platform == "win32"  # mypy checks none of what follows on Linux; ruff does


def main() -> int:
    try:
        import bridge
    except ImportError as exc:
        print(json.dumps({"module": "bridge", "ok": False, "detail": str(exc)}))
        return 1
    print(json.dumps({"module": "bridge", "ok": True, "detail": bridge.__file__}))
    failed: list[str] = []
    names = [
        info.name
        for info in pkgutil.walk_packages(bridge.__path__, "bridge.")
        if not info.name.endswith(".__main__")  # runs the CLI
    ]
    for name in sorted(names):
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            failed.append(name)
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{last.filename}:{last.lineno}"
            detail: object = f"{type(exc).__name__}: {exc} (at {where})"
            print(json.dumps({"module": name, "ok": False, "detail": detail}), flush=True)
        else:
            print(json.dumps({"module": name, "ok": True}), flush=True)
    summary = {"modules": len(names), "failed": failed}
    print(json.dumps({"module": "summary", "ok": True, "detail": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
