"""Probe, under the Windows Python, loopback TCP between Wine and Linux, with aiohttp.

Run: `wine64 python.exe probe_tcp.py LINUX_PORT` while a Linux process serves HTTP on
127.0.0.1:LINUX_PORT (tests/wine/run_probes.py does both sides). Prints JSON lines:
- {"listening": {"127.0.0.1": port, "::1": port-or-null}}: an aiohttp server on the
  ProactorEventLoop, bound to loopback inside Wine; the Linux side then GETs /probe on
  each and the probe waits (60 s at most) for those requests;
- {"check": ..., "ok": ..., "detail": ...} for: the aiohttp client (inside Wine) reaching
  the Linux server, and the Linux side's requests arriving.
Exits 1 if a required check failed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

from aiohttp import ClientSession, ClientTimeout, web

assert sys.platform == "win32"  # mypy checks none of what follows on Linux; ruff does

failures: list[str] = []


def report(check: str, ok: bool, detail: object = None, *, required: bool = True) -> None:
    if not ok and required:
        failures.append(check)
    line: dict[str, object] = {"check": check, "ok": ok, "detail": detail}
    if not required:
        line["required"] = False
    print(json.dumps(line), flush=True)


async def main(linux_port: int) -> int:
    loop = asyncio.get_running_loop()
    report("event loop", type(loop).__name__ == "ProactorEventLoop", type(loop).__name__)

    try:
        url = f"http://127.0.0.1:{linux_port}/from-wine"
        async with (
            ClientSession(timeout=ClientTimeout(total=20)) as session,
            session.get(url) as response,
        ):
            body = await response.text()
        report("aiohttp client in Wine -> Linux 127.0.0.1", response.status == 200, body[:80])
    except Exception as exc:
        report("aiohttp client in Wine -> Linux 127.0.0.1", False, f"{type(exc).__name__}: {exc}")

    seen: dict[str, asyncio.Future[str]] = {
        "127.0.0.1": loop.create_future(),
        "::1": loop.create_future(),
    }

    async def probe(request: web.Request) -> web.Response:
        local = request.transport.get_extra_info("sockname")[0] if request.transport else "?"
        peer = request.remote or "?"
        key = "::1" if ":" in local else "127.0.0.1"
        if not seen[key].done():
            seen[key].set_result(f"from {peer} to {local}")
        return web.Response(text=f"wine saw {peer}")

    app = web.Application()
    app.router.add_get("/probe", probe)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    ports: dict[str, int | None] = {}
    for host in ("127.0.0.1", "::1"):
        try:
            site = web.TCPSite(runner, host, 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            ports[host] = server.sockets[0].getsockname()[1]
        except OSError as exc:
            ports[host] = None
            report(f"listen on [{host}]:0 in Wine", False, str(exc), required=host == "127.0.0.1")
    print(json.dumps({"listening": ports}), flush=True)

    for host, future in seen.items():
        if ports.get(host) is None:
            continue
        try:
            detail = await asyncio.wait_for(future, 60)
            report(f"Linux -> aiohttp server in Wine on {host}", True, detail)
        except TimeoutError:
            report(
                f"Linux -> aiohttp server in Wine on {host}",
                False,
                "no request within 60 s",
                required=host == "127.0.0.1",
            )
    await runner.cleanup()
    report("socket.has_ipv6", socket.has_ipv6, socket.has_ipv6, required=False)
    failed = list(failures)
    report("summary", not failed, {"failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]))))
