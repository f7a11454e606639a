"""Run every tests/wine/probe_*.py under the Windows CPython in Wine and summarize.

    python3 -m tests.wine.run_probes [TREE]      # from the checkout; TREE: setup.sh's output

Builds the tree when TREE is not given. Prints each probe's checks as
`ok|FAIL|info  probe: check -- detail`, then one summary line, and exits 1 if a required
check failed. The TCP probe gets its Linux side here: an HTTP server on 127.0.0.1 for the
Windows aiohttp client, and GETs to the aiohttp server it starts inside Wine.
"""

from __future__ import annotations

import http.server
import json
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.wine.winepy import Wine, build, windows_path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
Result = dict[str, Any]


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"linux saw {self.client_address[0]} ask for {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def parse(stdout: str) -> list[Result]:
    results: list[Result] = []
    for line in stdout.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            results.append(item)
    return results


def run_plain(wine: Wine, python: Path, name: str, *args: str) -> tuple[list[Result], str]:
    done = wine.run(python, [windows_path(HERE / name), *args], timeout=300)
    tail = "" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-2000:]}"
    return parse(done.stdout), tail


def run_tcp(wine: Wine, python: Path) -> tuple[list[Result], str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    results: list[Result] = []
    process = wine.start(python, [windows_path(HERE / "probe_tcp.py"), str(server.server_port)])
    try:
        assert process.stdout is not None
        for line in process.stdout:
            item = parse(line)
            if not item:
                continue
            results.extend(item)
            ports = item[0].get("listening")
            if not isinstance(ports, dict):
                continue
            for host, port in ports.items():
                if port is None:
                    continue
                url = f"http://{'[::1]' if ':' in host else host}:{port}/probe"
                try:
                    with opener.open(url, timeout=20) as response:
                        text = response.read().decode()
                    ok, detail = response.status == 200, text
                except OSError as exc:
                    ok, detail = False, str(exc)
                results.append(
                    {"check": f"Linux GET {url}", "ok": ok, "detail": detail,
                     "required": host == "127.0.0.1"}
                )  # fmt: skip
        code = process.wait(120)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
        server.shutdown()
    return results, "" if code == 0 else f"exit {code}: {stderr[-2000:]}"


def main(argv: list[str]) -> int:
    tree = Path(argv[0]) if argv else build()
    passed = failed = informational = 0
    with tempfile.TemporaryDirectory(prefix="oauth-bridge-wine-") as scratch:
        started = time.monotonic()
        wine = Wine(tree).clone(Path(scratch) / "prefix")  # the cached prefix stays as built
        cloned = time.monotonic() - started
        wine.up(linger=10)
        up = time.monotonic() - started - cloned
        print(f"prefix cloned in {cloned:.2f}s, wineserver + services up in {up:.1f}s ({tree})")
        view = wine.view(REPO, Path(scratch) / "py")
        runs: dict[str, Callable[[], tuple[list[Result], str]]] = {
            "probe_pipes": lambda: run_plain(wine, wine.python, "probe_pipes.py"),
            "probe_tcp": lambda: run_tcp(wine, wine.python),
            "probe_winreg": lambda: run_plain(wine, wine.python, "probe_winreg.py"),
            "probe_process": lambda: run_plain(wine, wine.python, "probe_process.py"),
            "probe_imports (the checkout, via a view)": lambda: run_plain(
                wine, view, "probe_imports.py"
            ),
        }
        for probe, run in runs.items():
            started = time.monotonic()
            results, trouble = run()
            took = time.monotonic() - started
            if trouble:
                print(f"FAIL  {probe}: {trouble}")
            for item in results:
                name = item.get("check") or item.get("module")
                if name is None or name == "summary":
                    continue
                required = item.get("required", True) and "module" not in item
                mark = "ok" if item.get("ok") else ("FAIL" if required else "info")
                detail = json.dumps(item.get("detail"))
                print(f"{mark:4}  {probe}: {name} -- {detail[:400]}")
                if item.get("ok"):
                    passed += 1
                elif required:
                    failed += 1
                else:
                    informational += 1
            if trouble and "imports" not in probe:
                failed += 1
            print(f"      {probe} took {took:.1f}s")
        wine.down()
    print(
        f"wine probes: {passed} checks ok, {failed} required checks failed, "
        f"{informational} informational checks not met"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
